"""Side data stored as float16 (`space.side_bits: 16`): the file shrinks, the model is still the file."""

import struct

import pytest
import torch

from spaces.compress import ModelSpec, compress, finalize_compressed, load_packed_model, quantizable_layers
from spaces.quant import QuantizationError, UniformQuantizer, get_quantizer, pack_weights, unpack_weights
from spaces.quant.base import round_to_half
from spaces.sharing import share_repeated_blocks

ARGUMENTS = dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16)
FULL = ModelSpec("resnet", ARGUMENTS, 24, 100, 16000)
HALF = ModelSpec("resnet", ARGUMENTS, 24, 100, 16000, side_bits=16)


def _trained_looking_state():
    """Weights with non-trivial norm statistics, so every side tensor has values float16 must round."""
    torch.manual_seed(0)
    model = FULL.build()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor).abs_() + 0.1 if "running_var" in key else torch.randn_like(tensor))
    return model.state_dict()


def test_half_side_tensors_round_trip_at_two_bytes_per_value():
    quantized = UniformQuantizer().quantize(torch.randn(6, 4, 3), 3)
    half = quantized.with_half_side("conv")
    bias = torch.randn(6)
    full_file = pack_weights({"conv.weight": quantized, "conv.bias": bias})
    half_file = pack_weights({"conv.weight": half, "conv.bias": bias.to(torch.float16)})
    assert len(full_file) - len(half_file) == 2 * (6 + 6)  # six scales and six biases, 2 bytes saved each
    restored = unpack_weights(half_file)
    assert restored["conv.weight"].side_bits == 16 and half.overhead_bits == 16 * 6
    assert torch.equal(restored["conv.weight"].side["scale"], half.side["scale"])
    assert torch.equal(restored["conv.bias"], bias.to(torch.float16).float())
    assert restored["conv.bias"].dtype == torch.float32
    assert not torch.equal(half.side["scale"], quantized.side["scale"])  # rounding did happen


def test_version_1_files_still_read():
    """A file of the format before float16 storage: no side-bits byte, float32 side tensors."""
    name, side_name = b"w", b"scale"
    body = struct.pack("<H", 1) + name + struct.pack("<BB2I", 1, 2, 1, 2) + struct.pack("<B", 2)
    body += struct.pack("<B", 7) + b"uniform" + struct.pack("<B", 1)
    body += struct.pack("<B", len(side_name)) + side_name + struct.pack("<BI", 1, 1) + struct.pack("<f", 0.5)
    body += bytes([0b1101])  # codes 1 and 3 at 2 bits
    entries = unpack_weights(b"SPKQ" + struct.pack("<BI", 1, 1) + body)
    assert entries["w"].side_bits == 32 and entries["w"].codes.flatten().tolist() == [1, 3]
    assert UniformQuantizer().dequantize(entries["w"]).flatten().tolist() == [0.0, 1.0]


def test_half_side_model_is_what_the_file_holds_and_smaller():
    state = _trained_looking_state()
    layers = quantizable_layers(FULL.build())
    bits = {name: 4 for name in layers}
    bits[layers[-1]] = 32  # one layer kept at FP32: its weight and bias stay float32
    full = compress(FULL, state, bits)
    half = compress(HALF, state, bits)
    restored = load_packed_model(HALF, half.packed)
    for key, value in half.model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    kept = f"{layers[-1]}.weight"
    assert torch.equal(half.model.state_dict()[kept], state[kept])
    rounded = [key for key, value in half.model.state_dict().items() if value.is_floating_point() and key != kept and not torch.equal(value, full.model.state_dict()[key])]
    assert any("bn" in key or "running" in key for key in rounded)  # norm terms rounded too
    features = torch.randn(2, 60, 24)
    with torch.no_grad():
        assert torch.equal(restored(features), half.model(features))
        relative = (half.model(features) - full.model(features)).norm() / full.model(features).norm()
    assert 0 < float(relative) < 1e-2  # float16 side data moves the output a little, not a lot
    saved = len(full.packed) - len(half.packed)
    described = sum(layer.stored_weight_bits for layer in full.description.layers) - sum(
        layer.stored_weight_bits for layer in half.description.layers
    )
    assert saved > 0 and saved * 8 == described  # the description prices exactly the bytes the file saves


def test_an_fp32_model_is_never_rounded():
    state = _trained_looking_state()
    reference = compress(HALF, state, {})
    assert reference.packed == compress(FULL, state, {}).packed
    assert all(layer.extra_bits == 32 for layer in reference.description.layers)


def test_side_bits_do_not_change_what_a_teacher_is():
    """The teacher caches key on `architecture()`: the same teacher serves both precisions (and old caches)."""
    assert HALF.architecture() == FULL.architecture()
    assert set(FULL.architecture()) == {"family", "kwargs", "num_mel_bins", "frames_per_second", "sample_rate"}
    assert HALF != FULL


def test_bad_side_bits_and_values_beyond_float16_are_clear_errors():
    with pytest.raises(QuantizationError, match="side_bits=8"):
        ModelSpec("resnet", ARGUMENTS, 24, 100, 16000, side_bits=8)
    with pytest.raises(QuantizationError, match="stem.0 scale: values beyond float16's range"):
        round_to_half(torch.tensor([1.0, 1e6]), "stem.0 scale")


def test_shared_weights_stay_stored_once_with_half_side_data():
    spec = ModelSpec("resnet", dict(ARGUMENTS, blocks=(2, 1, 1, 1)), 24, 100, 16000, side_bits=16)
    model = spec.build().eval()
    tied = share_repeated_blocks(model)
    quantizer = get_quantizer("uniform")
    quantized = {layer: quantizer.quantize(model.get_submodule(layer).weight, 4) for layer in quantizable_layers(model) if layer not in tied}
    entries = unpack_weights(finalize_compressed(spec, model, quantized).packed)
    for layer, owner in tied.items():
        assert entries[f"{layer}.weight"] is entries[f"{owner}.weight"] and entries[f"{layer}.weight"].side_bits == 16
