import pytest
import torch
from torch import nn

from spaces.compress import ModelSpec, compress, finalize_compressed, load_packed_model, quantizable_layers
from spaces.plan import StudentPlan
from spaces.quant import get_quantizer, pack_weights, unpack_weights
from spaces.quant.packing import PackedFileError
from spaces.sharing import SharingError, share_repeated_blocks, shared_layers, shared_state_keys, tie_quantized
from spaces.students import build_student

SPECS = {
    "resnet": ModelSpec("resnet", dict(num_mel_bins=20, base_width=4, blocks=(3, 2, 2, 2), embedding_dim=16), 20, 100, 16000),
    "ecapa_tdnn": ModelSpec(
        "ecapa_tdnn",
        dict(num_mel_bins=20, channels=16, embedding_dim=16, scale=4, se_channels=8, attention_channels=8, mfa_channels=24),
        20,
        100,
        16000,
    ),
    "xvector": ModelSpec(
        "xvector", dict(num_mel_bins=20, channels=16, pooling_channels=24, embedding_dim=16, frame_layers=7), 20, 100, 16000
    ),
}
EXPECTED_OWNERS = {
    "resnet": {"layer1.1.conv1": "layer1.0.conv1", "layer1.2.conv2": "layer1.0.conv2", "layer4.1.conv1": None},
    "ecapa_tdnn": {"block2.conv_in.conv": "block1.conv_in.conv", "block3.se.up": "block1.se.up"},
    "xvector": {"frame3.conv": "frame2.conv", "frame6.conv": "frame4.conv", "frame5.conv": "frame4.conv"},
}


def quantize_all(model: nn.Module, bits: int) -> dict:
    uniform = get_quantizer("uniform")
    return {name: uniform.quantize(model.get_submodule(name).weight, bits) for name in quantizable_layers(model)}


@pytest.mark.parametrize("family", sorted(SPECS))
def test_repeated_blocks_of_equal_shapes_share_one_parameter(family):
    model = SPECS[family].build()
    tied = share_repeated_blocks(model)
    assert tied == shared_layers(model)
    for alias, owner in EXPECTED_OWNERS[family].items():
        assert tied.get(alias) == owner
        if owner:
            assert model.get_submodule(alias).weight is model.get_submodule(owner).weight
    assert len({id(parameter) for parameter in model.parameters()}) == len(list(model.parameters()))


def test_normalisation_layers_are_not_shared():
    model = SPECS["xvector"].build()
    share_repeated_blocks(model)
    assert model.frame3.norm.weight is not model.frame2.norm.weight
    assert model.frame3.conv.bias is model.frame2.conv.bias


@pytest.mark.parametrize("family", sorted(SPECS))
@pytest.mark.parametrize("bits", [32, 4])
def test_sharing_reduces_size_bytes_and_the_packed_file(family, bits):
    spec = SPECS[family]
    torch.manual_seed(0)
    plain = spec.build()
    shared = spec.build()
    share_repeated_blocks(shared)
    sizes = []
    for model in (plain, shared):
        quantized = quantize_all(model, bits) if bits < 32 else {}
        compressed = finalize_compressed(spec, model, quantized)
        assert compressed.description.size_bytes == len(compressed.packed)
        sizes.append((len(compressed.packed), compressed.description.params, compressed.description.macs_per_second))
    (plain_size, plain_params, plain_macs), (shared_size, shared_params, shared_macs) = sizes
    assert shared_size < plain_size and shared_params < plain_params
    assert shared_macs == plain_macs  # every use of a shared weight still runs


def test_shared_weights_are_stored_once_and_unpack_to_the_same_model():
    spec = SPECS["xvector"]
    model = spec.build()
    tied = share_repeated_blocks(model)
    compressed = finalize_compressed(spec, model, quantize_all(model, 3))
    entries = unpack_weights(compressed.packed)
    for alias, owner in tied.items():
        assert entries[f"{alias}.weight"] is entries[f"{owner}.weight"]
        assert entries[f"{alias}.bias"] is entries[f"{owner}.bias"]
    described = {layer.name: layer for layer in compressed.description.layers}
    assert described["frame3.conv"].shared_with == "frame2.conv" and described["frame3.conv"].stored_weight_bits == 0
    features = torch.randn(2, 40, 20)
    assert torch.allclose(load_packed_model(spec, compressed.packed)(features), compressed.model(features), atol=1e-6)


def test_packed_file_size_drops_by_exactly_the_shared_tensors():
    spec = SPECS["xvector"]
    model = spec.build()
    tied = share_repeated_blocks(model)
    entries = {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    untied = pack_weights(entries)
    aliased = dict(entries)
    for key, owner in shared_state_keys(model).items():
        aliased[key] = aliased[owner]
    packed = pack_weights(aliased)
    saved = sum(4 * entries[key].numel() + 1 + 4 * entries[key].dim() for key in shared_state_keys(model))
    alias_record = sum(2 + len(owner.encode()) for owner in shared_state_keys(model).values())
    assert len(untied) - len(packed) == saved - alias_record
    assert len(tied) == 3


def test_alias_of_a_missing_entry_is_a_corrupt_file():
    weight = torch.ones(2)
    data = bytearray(pack_weights({"a": weight, "b": weight}))
    assert data.endswith(b"b\x02\x01\x00a")  # entry "b": an alias of "a"
    data[-1] = ord("z")
    with pytest.raises(PackedFileError, match="entry 'b': alias of 'z'"):
        unpack_weights(bytes(data))


def test_compress_ties_the_codes_of_shared_layers():
    spec, model = build_student(SPECS["resnet"], StudentPlan("resnet"), share=True)
    compressed = compress(spec, model.state_dict(), {"layer1.0.conv1": 4, "layer1.1.conv1": 4})
    assert compressed.description.layer("layer1.1.conv1").weight_bits == 4
    assert compressed.model.layer1[1].conv1.weight is compressed.model.layer1[0].conv1.weight


def test_a_shared_layer_quantized_unlike_its_owner_is_a_clear_error():
    model = SPECS["resnet"].build()
    share_repeated_blocks(model)
    quantized = quantize_all(model, 4)
    quantized["layer1.1.conv1"] = get_quantizer("uniform").quantize(model.layer1[1].conv1.weight, 6)
    message = "'layer1.1.conv1' shares its weights with 'layer1.0.conv1' but is quantized as 6-bit"
    with pytest.raises(SharingError, match=message):
        tie_quantized(model, quantized)
    del quantized["layer1.0.conv1"]
    with pytest.raises(SharingError, match="which is not quantized"):
        tie_quantized(model, quantized)


def test_a_model_without_repeated_blocks_cannot_share():
    with pytest.raises(SharingError, match="Linear lists no repeated blocks"):
        share_repeated_blocks(nn.Linear(2, 2))
