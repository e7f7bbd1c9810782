"""ONNX export of the GE2E encoder's `QuantizableLSTM`: its gate matrices stay integer codes that
the exporter's gate reordering reads, and onnxruntime's LSTM computes what PyTorch's does; the
bundle record of a windowed front-end. (Export and verify of a GE2E run: test_loaded_teacher.)"""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from search.onnx_export import export_onnx, weight_storage
from spaces.bundle import BundleConfig, BundleError, FeatureSettings, PartialWindows, verification_signature
from spaces.compress import ModelSpec, compress, quantizable_layers, stored_quantized
from spaces.quant import unpack_weights

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec("ge2e", dict(num_mel_bins=40, hidden_size=16, embedding_dim=16, num_layers=2), 40, 100, 16000)
TRACED = torch.zeros(1, 160, 40)
"""One window of 160 frames: the traced input; the checks feed other batch sizes and lengths."""
AXES = {"features": {0: "windows", 1: "frames"}, "embedding": {0: "windows"}}


@pytest.fixture(scope="module")
def teacher_state():
    torch.manual_seed(0)
    return SPEC.build().state_dict()


def _exported(teacher_state, bits: dict[str, int], quantizer: str) -> tuple[nn.Module, onnx.ModelProto]:
    compressed = compress(SPEC, teacher_state, bits, quantizer)
    entries = unpack_weights(compressed.packed)
    quantized = stored_quantized(entries)
    return compressed.model, export_onnx(compressed.model, quantized, {"features": TRACED}, ["embedding"], AXES)


def _onnxruntime(graph: onnx.ModelProto, features: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.numpy()})[0]


@pytest.mark.parametrize("quantizer", ["uniform", "kmeans"])
def test_a_4_bit_lstm_runs_in_onnxruntime_as_in_pytorch_from_integer_codes(teacher_state, quantizer):
    layers = quantizable_layers(SPEC.build())
    model, graph = _exported(teacher_state, {layer: 4 for layer in layers}, quantizer)
    assert [node.op_type for node in graph.graph.node].count("LSTM") == 2
    storage = weight_storage(graph)
    assert set(storage) == {"lstm.l0.ih", "lstm.l0.hh", "lstm.l1.ih", "lstm.l1.hh", "linear"} == set(layers)
    assert {layer: item.dtype for layer, item in storage.items()} == {layer: "UINT4" for layer in layers}
    assert storage["lstm.l0.ih"].shape == (64, 40) and storage["lstm.l0.hh"].shape == (64, 16)
    windows = torch.randn(5, 97, 40)  # other windows and frames than traced: both axes are dynamic
    with torch.no_grad():
        expected = model(windows).numpy()
    assert np.allclose(_onnxruntime(graph, windows), expected, rtol=1e-5, atol=1e-6)


def test_lstm_matrices_left_fp32_are_reported_as_float(teacher_state):
    bits = {"lstm.l0.ih": 4, "lstm.l0.hh": 4, "linear": 4}
    model, graph = _exported(teacher_state, bits, "uniform")
    storage = weight_storage(graph)
    assert {layer: item.dtype for layer, item in storage.items()} == {
        "lstm.l0.ih": "UINT4", "lstm.l0.hh": "UINT4", "lstm.l1.ih": "FLOAT", "lstm.l1.hh": "FLOAT", "linear": "UINT4",
    }  # fmt: skip
    windows = torch.randn(2, 180, 40)
    with torch.no_grad():
        assert np.allclose(_onnxruntime(graph, windows), model(windows).numpy(), rtol=1e-5, atol=1e-6)


class _MaskedSimilarity(nn.Module):
    """Frames projected, masked by a 2-D parameter named `weight`, then a MatMul of two activations."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(8, 8)
        self.mask = nn.Module()
        self.mask.weight = nn.Parameter(torch.rand(5, 8))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        masked = self.projection(features) * self.mask.weight
        return masked @ masked.transpose(1, 2)


def test_a_matmul_of_activations_names_no_layer():
    """The MatMul's second input is computed from `mask.weight`, but from the features too: not a layer's weight."""
    graph = export_onnx(_MaskedSimilarity(), {}, {"features": torch.zeros(1, 5, 8)}, ["scores"], {"features": {0: "batch"}})
    assert set(weight_storage(graph)) == {"projection"}


def _bundle_config(windows: PartialWindows | None) -> BundleConfig:
    inputs, outputs = verification_signature(40, 16, windowed=windows is not None)
    features = FeatureSettings(40, 25.0, 10.0, "ge2e front-end", windows)
    return BundleConfig("verification", "ge2e", {}, 16000, features, {}, inputs, outputs, 0, "")


def test_config_json_records_the_windows_and_reads_bundles_from_before_them():
    windows = PartialWindows("ge2e", 160, 77, 0.75)
    config = _bundle_config(windows)
    data = json.loads(json.dumps(config.to_dict()))  # as config.json holds it
    assert BundleConfig.from_dict(data) == config
    assert config.features.frames_per_second == round(100 * 160 / 77)  # overlapping windows: frames read per second
    older = json.loads(json.dumps(_bundle_config(None).to_dict()))
    del older["features"]["windows"]  # bundles written before windowed models could be exported
    assert BundleConfig.from_dict(older).features.windows is None
    data["features"]["windows"]["pooling"] = "max"
    with pytest.raises(BundleError, match="features.windows: pooling='max': expected one of"):
        BundleConfig.from_dict(data)
