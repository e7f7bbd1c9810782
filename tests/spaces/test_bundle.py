import json
import struct

import pytest
import torch

import spaces
from spaces.bundle import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    BundleError,
    FeatureSettings,
    example_inputs,
    load_bundle,
    read_bundle_config,
    verification_signature,
    weights_digest,
    write_bundle_config,
)
from spaces.compress import ModelSpec, compress, finalize_compressed, quantizable_layers
from spaces.plan import LayerQuantization
from spaces.quant import QuantizedWeight, get_quantizer, unpack_weights
from spaces.sharing import share_repeated_blocks

pytestmark = pytest.mark.usefixtures("single_thread")

ARGUMENTS = dict(num_mel_bins=24, base_width=4, blocks=[1, 1, 1, 1], embedding_dim=16)
SPEC = ModelSpec("resnet", ARGUMENTS, 24, 100, 16000)
QUANTIZERS = ["uniform", "pow2", "kmeans", "binary-adaptive", "uniform-asym"]


def _write_bundle(folder, spec: ModelSpec, compressed, share: bool = False) -> BundleConfig:
    """A bundle holding `compressed`, written the way `search export` writes config.json and weights.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WEIGHTS_FILE).write_bytes(compressed.packed)
    layers = {
        key.removesuffix(".weight"): LayerQuantization(entry.bits, entry.quantizer)
        for key, entry in unpack_weights(compressed.packed).items()
        if isinstance(entry, QuantizedWeight)
    }
    inputs, outputs = verification_signature(spec.num_mel_bins, 16)
    config = BundleConfig(
        task="verification",
        family=spec.family,
        model_arguments=dict(spec.kwargs),
        sample_rate=spec.sample_rate,
        features=FeatureSettings(num_mel_bins=spec.num_mel_bins, frame_length_ms=25.0, frame_shift_ms=10.0),
        layers=layers,
        inputs=inputs,
        outputs=outputs,
        size_bytes=len(compressed.packed),
        weights_sha256=weights_digest(compressed.packed),
        share_repeated_blocks=share,
        side_bits=spec.side_bits,
        source={"trial": 7},
        metrics={"eer": 0.1},
    )
    write_bundle_config(folder, config)
    return config


@pytest.fixture(scope="module")
def compressed():
    torch.manual_seed(0)
    layers = quantizable_layers(SPEC.build())
    quantizers = {layer: QUANTIZERS[index % len(QUANTIZERS)] for index, layer in enumerate(layers)}
    bits = {layer: 1 if quantizers[layer].startswith("binary") else 3 + index % 5 for index, layer in enumerate(layers)}
    bits[layers[-1]] = 32  # one layer left FP32
    return compress(SPEC, SPEC.build().state_dict(), bits, quantizers)


@pytest.fixture
def bundle_path(tmp_path, compressed):
    _write_bundle(tmp_path / "bundle", SPEC, compressed)
    return tmp_path / "bundle"


def test_load_bundle_rebuilds_the_model_from_config_and_weights_alone(bundle_path, compressed):
    bundle = spaces.load_bundle(bundle_path)
    assert bundle.compressed.packed == compressed.packed
    assert bundle.compressed.description.size_bytes == (bundle_path / WEIGHTS_FILE).stat().st_size
    assert set(bundle.quantized) == set(bundle.config.layers) and len(bundle.quantized) == len(quantizable_layers(SPEC.build())) - 1
    features = torch.randn(2, 131, 24)
    with torch.no_grad():
        assert torch.equal(bundle.model(features), compressed.model(features))
    assert not bundle.model.training


def test_config_round_trips_through_json(tmp_path, compressed):
    written = _write_bundle(tmp_path / "bundle", SPEC, compressed)
    config = read_bundle_config(tmp_path / "bundle")
    assert config == written
    assert config.model_spec() == ModelSpec("resnet", ARGUMENTS, 24, 100, 16000)
    assert config.inputs[0].dynamic_axes == {0: "batch", 1: "frames"}


def test_example_inputs_hold_one_second_of_audio(bundle_path):
    (features,) = example_inputs(read_bundle_config(bundle_path)).values()
    assert features.shape == (1, 100, 24)


def test_shared_weights_rebuild_with_their_sharing(tmp_path):
    spec = ModelSpec("resnet", dict(ARGUMENTS, blocks=[2, 1, 1, 1]), 24, 100, 16000)
    model = spec.build().eval()
    tied = share_repeated_blocks(model)
    quantizer = get_quantizer("uniform")
    quantized = {layer: quantizer.quantize(model.get_submodule(layer).weight, 4) for layer in quantizable_layers(model) if layer not in tied}
    compressed = finalize_compressed(spec, model, quantized)
    _write_bundle(tmp_path / "shared", spec, compressed, share=True)
    bundle = load_bundle(tmp_path / "shared")
    assert bundle.model.layer1[1].conv1.weight is bundle.model.layer1[0].conv1.weight
    assert bundle.compressed.description.layer("layer1.1.conv1").shared_with == "layer1.0.conv1"
    assert bundle.compressed.packed == compressed.packed


def test_half_side_data_rebuilds_and_old_configs_mean_float32(tmp_path, compressed):
    half = ModelSpec("resnet", ARGUMENTS, 24, 100, 16000, side_bits=16)
    bits = {layer: 4 for layer in quantizable_layers(half.build())}
    packed = compress(half, SPEC.build().state_dict(), bits)
    _write_bundle(tmp_path / "half", half, packed)
    bundle = load_bundle(tmp_path / "half")
    assert bundle.config.side_bits == 16 and bundle.compressed.packed == packed.packed
    assert len(packed.packed) < len(compress(SPEC, SPEC.build().state_dict(), bits).packed)
    _write_bundle(tmp_path / "full", SPEC, compressed)
    _edit_config(tmp_path / "full", lambda data: data.pop("side_bits"))  # a bundle from before side_bits
    assert load_bundle(tmp_path / "full").config.side_bits == 32
    _edit_config(tmp_path / "half", lambda data: data.pop("side_bits"))
    with pytest.raises(BundleError, match="does not pack back to the same bytes"):
        load_bundle(tmp_path / "half")


def _rehashed(path, edit) -> None:
    """Edit weights.bin and record the edited file's length and checksum, as a deliberate tamperer would."""
    packed = edit((path / WEIGHTS_FILE).read_bytes())
    (path / WEIGHTS_FILE).write_bytes(packed)
    _edit_config(path, lambda data: data.update(size_bytes=len(packed), weights_sha256=weights_digest(packed)))


def _nan_in_first_float_tensor(packed: bytes) -> bytes:
    """The packed file with the first stored float32 value of 1.0 or of any FP32 tensor set to NaN."""
    entries = unpack_weights(packed)
    name, tensor = next((key, value) for key, value in entries.items() if isinstance(value, torch.Tensor))
    raw = tensor.contiguous().numpy().tobytes()
    at = packed.index(raw)
    return packed[:at] + struct.pack("<f", float("nan")) + packed[at + 4 :]


def _mangled_first_name(packed: bytes) -> bytes:
    """The packed file with the first byte of the first entry's name made invalid UTF-8."""
    name = next(iter(unpack_weights(packed))).encode()
    at = packed.index(name)
    return packed[:at] + b"\xff" + packed[at + 1 :]


def _edit_config(path, edit) -> None:
    data = json.loads((path / CONFIG_FILE).read_text())
    edit(data)
    (path / CONFIG_FILE).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: (path / WEIGHTS_FILE).write_bytes((path / WEIGHTS_FILE).read_bytes()[:-1]), "bytes, but config.json says size_bytes="),
        (lambda path: (path / WEIGHTS_FILE).write_bytes(b"\0" + (path / WEIGHTS_FILE).read_bytes()[1:]), "SHA-256 differs"),
        (lambda path: (path / WEIGHTS_FILE).unlink(), "weights.bin: missing"),
        (lambda path: (path / CONFIG_FILE).unlink(), "config.json: missing"),
        (lambda path: (path / CONFIG_FILE).write_text("{not json"), "corrupt JSON"),
        (lambda path: _edit_config(path, lambda data: data.pop("layers")), "missing key 'layers'"),
        (lambda path: _edit_config(path, lambda data: data.update(task="")), "task='': expected a task name"),
        (lambda path: _rehashed(path, _nan_in_first_float_tensor), r"holds non-finite values \(NaN or infinity\)"),
        (lambda path: _rehashed(path, _mangled_first_name), "malformed name .*not UTF-8 text"),
        (lambda path: _edit_config(path, lambda data: data.update(size_bytes="big")), "size_bytes='big': expected int"),
        (lambda path: _edit_config(path, lambda data: data.update(side_bits=12)), "side_bits=12: expected one of"),
        (lambda path: _edit_config(path, lambda data: data["layers"]["stem.0"].update(bits=8)), "layer 'stem.0' is stored as"),
        (lambda path: _edit_config(path, lambda data: data["features"].update(hop=3)), "unexpected keyword argument 'hop'"),
        (lambda path: _edit_config(path, lambda data: data["model_arguments"].update(base_width=8)), "does not fit the resnet model"),
    ],
)
def test_a_damaged_bundle_is_a_clear_error(bundle_path, damage, message):
    damage(bundle_path)
    with pytest.raises(BundleError, match=message) as error:
        load_bundle(bundle_path)
    assert str(bundle_path) in str(error.value)
