import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from search.onnx_export import OPSET, OnnxExportError, WeightStorage, export_onnx, weight_storage
from spaces.compress import ModelSpec, compress, finalize_compressed, quantizable_layers, stored_quantized
from spaces.quant import QUANTIZERS, ActivationQuantizer, Decoding, QuantizedWeight, UniformQuantizer, get_quantizer, unpack_weights
from spaces.sharing import share_repeated_blocks

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)
AXES = {"features": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}}


def _quantized(packed: bytes) -> dict[str, QuantizedWeight]:
    return stored_quantized(unpack_weights(packed))


def _export(model: nn.Module, quantized: dict[str, QuantizedWeight], bins: int = 24) -> onnx.ModelProto:
    return export_onnx(model, quantized, {"features": torch.zeros(1, 100, bins)}, ["embedding"], AXES)


def _run(graph: onnx.ModelProto, features: torch.Tensor, options: onnxruntime.SessionOptions | None = None) -> np.ndarray:
    session = onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.numpy()})[0]


@pytest.fixture(scope="module")
def teacher_state():
    torch.manual_seed(0)
    return SPEC.build().state_dict()


@pytest.mark.parametrize(
    "quantizer, bits, container",
    [
        ("uniform", 4, "UINT4"),
        ("uniform", 8, "UINT8"),
        ("uniform-asym", 3, "UINT4"),
        ("uniform-tensor", 6, "UINT8"),
        ("pow2", 4, "UINT4"),
        ("kmeans", 3, "UINT4"),
        ("kmeans-group4", 5, "UINT8"),
        ("binary", 1, "UINT4"),
        ("binary-adaptive", 1, "UINT4"),
    ],
)
def test_onnxruntime_matches_pytorch_with_integer_weights(teacher_state, quantizer, bits, container):
    compressed = compress(SPEC, teacher_state, {layer: bits for layer in quantizable_layers(SPEC.build())}, quantizer)
    quantized = _quantized(compressed.packed)
    graph = _export(compressed.model, quantized)
    storage = weight_storage(graph)
    assert set(storage) == set(quantized)
    assert {item.dtype for item in storage.values()} == {container}
    assert all(storage[layer].shape == tuple(weight.codes.shape) for layer, weight in quantized.items())
    initializers = {tensor.name for tensor in graph.graph.initializer}
    assert not any(f"{layer}.weight" in initializers for layer in quantized)  # no float copy left behind
    features = torch.randn(2, 137, 24)  # another batch and length than the trace: the axes are dynamic
    with torch.no_grad():
        expected = compressed.model(features).numpy()
    assert np.allclose(_run(graph, features), expected, rtol=1e-4, atol=1e-5)


def test_codes_in_the_graph_are_the_packed_codes(teacher_state):
    compressed = compress(SPEC, teacher_state, {"layer2.0.conv1": 4, "embedding": 7}, {"layer2.0.conv1": "kmeans", "embedding": "uniform"})
    graph = _export(compressed.model, _quantized(compressed.packed))
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.graph.initializer}
    for layer, weight in _quantized(compressed.packed).items():
        assert np.array_equal(initializers[f"{layer}.weight.codes"].astype(np.uint8), weight.codes.numpy())
    assert graph.opset_import[0].version == OPSET
    kinds = {node.op_type for node in graph.graph.node}
    assert {"DequantizeLinear", "Gather", "BatchNormalization"} <= kinds  # batch norms are not folded away


def test_asymmetric_zero_point_outside_the_codes_uses_signed_levels():
    layer = nn.Linear(6, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(3, 6) + 0.5)  # all positive: the zero point lies below code 0
    model = nn.Sequential(layer)
    quantizer = get_quantizer("uniform-asym")
    weight = quantizer.quantize(layer.weight, 8)
    assert float(weight.side["zero_point"].min()) < 0
    with torch.no_grad():
        layer.weight.copy_(quantizer.dequantize(weight))
    graph = export_onnx(model, {"0": weight}, {"features": torch.zeros(1, 6)}, ["embedding"], {"features": {0: "batch"}})
    assert weight_storage(graph)["0"].dtype == "INT16"
    features = torch.randn(5, 6)
    with torch.no_grad():
        assert np.allclose(_run(graph, features), model(features).numpy(), rtol=1e-5, atol=1e-6)


class _ActivationQuantized(nn.Module):
    """Two convolutions whose inputs pass activation quantizers, as QAT with quantized activations builds."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.input_quantizer = ActivationQuantizer(bits)
        self.conv1 = nn.Conv1d(24, 32, 3, padding=1)
        self.relu = nn.ReLU()
        self.hidden_quantizer = ActivationQuantizer(bits)
        self.conv2 = nn.Conv1d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 16)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(self.input_quantizer(features.transpose(1, 2))))
        return self.head(self.conv2(self.hidden_quantizer(x)).mean(dim=-1))


@pytest.mark.parametrize("bits", [8, 6])
def test_quantized_activations_become_quantize_dequantize_pairs(tmp_path, bits):
    torch.manual_seed(1)
    model = _ActivationQuantized(bits).eval()
    with torch.no_grad():
        model(3 * torch.randn(4, 120, 24))  # calibration
    model.input_quantizer.freeze()
    model.hidden_quantizer.freeze()
    quantizer = get_quantizer("uniform")
    quantized = {name: quantizer.quantize(getattr(model, name).weight, 8) for name in ("conv1", "conv2", "head")}
    with torch.no_grad():
        for name, weight in quantized.items():
            getattr(model, name).weight.copy_(quantizer.dequantize(weight))
    graph = _export(model, quantized)
    kinds = [node.op_type for node in graph.graph.node]
    assert kinds.count("QuantizeLinear") == 2 and ("Clip" in kinds) == (bits < 8)
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    features = 3 * torch.randn(3, 150, 24)
    outputs = _run(graph, features, options)
    with torch.no_grad():
        expected = model(features).numpy()
    cosine = (outputs * expected).sum(1) / np.linalg.norm(outputs, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999 and np.abs(outputs - expected).max() <= 1e-3 * np.abs(expected).max()
    if bits == 8:  # onnxruntime fused the pairs into integer convolutions (u8 activations x u8 weights)
        assert "QLinearConv" in {node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node}


def test_calibrating_activation_quantizers_export_as_identity():
    model = _ActivationQuantized(8).eval()
    graph = _export(model, {})
    assert "QuantizeLinear" not in {node.op_type for node in graph.graph.node}
    features = torch.randn(1, 50, 24)
    with torch.no_grad():
        assert np.allclose(_run(graph, features), model(features).numpy(), atol=1e-5)


def test_shared_weights_are_written_once(teacher_state):
    spec = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(2, 1, 1, 1), embedding_dim=16), 24, 100, 16000)
    model = spec.build().eval()
    tied = share_repeated_blocks(model)
    assert tied  # layer1.1 shares layer1.0's convolutions
    quantizer = get_quantizer("uniform")
    quantized = {layer: quantizer.quantize(model.get_submodule(layer).weight, 4) for layer in quantizable_layers(model) if layer not in tied}
    compressed = finalize_compressed(spec, model, quantized)
    graph = _export(compressed.model, _quantized(compressed.packed))
    codes = [tensor.name for tensor in graph.graph.initializer if tensor.name.endswith(".codes")]
    assert len(codes) == len(quantized)
    features = torch.randn(1, 90, 24)
    with torch.no_grad():
        assert np.allclose(_run(graph, features), compressed.model(features).numpy(), rtol=1e-4, atol=1e-5)


def test_weight_storage_reports_float_weights(teacher_state):
    compressed = compress(SPEC, teacher_state, {"embedding": 4})
    graph = _export(compressed.model, _quantized(compressed.packed))
    assert weight_storage(graph)["embedding"].dtype == "UINT4"
    assert weight_storage(graph)["stem.0"].dtype == "FLOAT"  # left FP32 by the candidate
    node = next(node for node in graph.graph.node if node.output[0] == "embedding.weight")
    graph.graph.node.remove(node)
    graph.graph.initializer.append(numpy_helper.from_array(compressed.model.embedding.weight.detach().numpy(), "embedding.weight"))
    assert weight_storage(graph)["embedding"] == WeightStorage("FLOAT", (16, 192))
    assert not weight_storage(graph)["embedding"].integer


class _UnknownDecoding(Decoding):
    """A decoding kind the exporter has no graph builder for."""


@pytest.mark.parametrize("decoding", [None, _UnknownDecoding()])
def test_a_quantizer_without_a_decoding_the_exporter_builds_is_an_export_error(monkeypatch, decoding):
    quantizer = UniformQuantizer()
    quantizer.name, quantizer.decoding = "uniform-opaque", decoding
    monkeypatch.setitem(QUANTIZERS, quantizer.name, quantizer)
    model = nn.Sequential(nn.Conv1d(1, 2, 3))
    quantized = {"0": quantizer.quantize(model[0].weight, 4)}
    with pytest.raises(OnnxExportError, match=r"'uniform-opaque': no integer ONNX decoding .*known decodings: \['CodebookLookup'"):
        export_onnx(model, quantized, {"signal": torch.zeros(1, 1, 20)}, ["output"], {})


class _CeilFramesPad(nn.Module):
    """Pads the input to whole hops, as the extractor's encoder does: `-(-(samples - 4) // 3)` frames."""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = -(-(audio.shape[-1] - 4) // 3) + 1
        return nn.functional.pad(audio, (0, (frames - 1) * 3 + 4 - audio.shape[-1]))


def test_integer_floor_division_follows_dynamic_lengths():
    graph = export_onnx(_CeilFramesPad(), {}, {"audio": torch.zeros(1, 16)}, ["padded"], {"audio": {1: "samples"}, "padded": {1: "padded"}})
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for samples in (16, 17, 23):
        audio = torch.randn(1, samples)
        (padded,) = session.run(None, {"audio": audio.numpy()})
        assert np.array_equal(padded, _CeilFramesPad()(audio).numpy())  # ONNX Div alone truncates: 17 -> 16 samples
