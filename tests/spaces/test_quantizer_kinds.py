"""A quantizer family owns its training, ONNX decoding and cost-model kernel: a new kind needs no other module."""

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from hwcost import estimate, kernel_class, load_target
from search.onnx_export import export_onnx, weight_storage
from spaces.describe import describe_model
from spaces.plan import LayerQuantization
from spaces.quant import QUANTIZERS, FakeQuantizer, QatOptions, QuantizedWeight, Quantizer, ScaledTable, get_quantizer
from spaces.quant.base import check_bits
from spaces.quant.qat import attach_fake_quantizers, export_quantized, fake_quantized_layers, without_fake_quantizers
from spaces.quant.straight_through import replace_straight_through

pytestmark = pytest.mark.usefixtures("single_thread")

SAMPLE_RATE = 100
"""Samples in the one second of audio a description traces (tiny, to keep the models tiny)."""


def _ternary_codes(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Codes 0, 1, 2 for the levels -scale, 0, +scale; magnitudes below half the scale become 0."""
    signs = torch.sign(rows) * (rows.abs() >= scale[:, None] / 2)
    return (signs + 1).to(torch.uint8)


class TernaryQuantizer(Quantizer):
    """A kind the codebase does not have: three levels per output channel, decoded through a table."""

    name = "ternary"
    allowed_bits = (2,)
    decoding = ScaledTable("scale")
    table_lookup = True

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        rows = weight.detach().reshape(weight.shape[0], -1).float()
        scale = rows.abs().mean(dim=1)
        return QuantizedWeight(self.name, bits, _ternary_codes(rows, scale).reshape(weight.shape), {"scale": scale})

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        scale = quantized.side["scale"]
        levels = quantized.codes.reshape(scale.shape[0], -1).float() - 1.0
        return (levels * scale[:, None]).reshape(quantized.codes.shape)

    def fake_quantizer(self, bits: int, latent: torch.Tensor, options: QatOptions) -> FakeQuantizer:
        return LearnedScaleTernary(self, bits, latent)


class LearnedScaleTernary(FakeQuantizer):
    """The ternary kind's own fake-quantizer: a learned per-channel scale, straight-through signs."""

    def __init__(self, quantizer: TernaryQuantizer, bits: int, latent: torch.Tensor) -> None:
        super().__init__(quantizer, bits)
        self.scale = nn.Parameter(quantizer.quantize(latent, bits).side["scale"].clone())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        rows = latent.reshape(self.scale.shape[0], -1)
        levels = _ternary_codes(rows.detach(), self.scale.detach()).float() - 1.0
        return replace_straight_through(rows, levels * self.scale[:, None]).reshape(latent.shape)

    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        rows, scale = latent.detach().reshape(self.scale.shape[0], -1), self.scale.detach().clone()
        return QuantizedWeight(self.quantizer.name, self.bits, _ternary_codes(rows, scale).reshape(latent.shape), {"scale": scale})


@pytest.fixture
def ternary(monkeypatch):
    monkeypatch.setitem(QUANTIZERS, TernaryQuantizer.name, TernaryQuantizer())
    return TernaryQuantizer.name


def _toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 6, 3), nn.ReLU(), nn.Conv1d(6, 3, 1))


def test_a_new_kind_trains_exports_to_onnx_and_is_priced_through_its_own_module(ternary):
    model = _toy_model()
    signal = torch.randn(4, 2, SAMPLE_RATE)

    # Quantization-aware training attaches the kind's own fake-quantizer and trains its scale.
    new_parameters = attach_fake_quantizers(model, {"0": LayerQuantization(2, ternary)})
    assert isinstance(fake_quantized_layers(model)["0"], LearnedScaleTernary)
    scale_before = new_parameters[0].detach().clone()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model(signal).square().mean().backward()
    optimiser.step()
    assert not torch.equal(new_parameters[0].detach(), scale_before)
    quantized = export_quantized(model)["0"]
    assert torch.equal(get_quantizer(ternary).dequantize(quantized), model[0].weight.detach())

    # The ONNX graph decodes the 2-bit codes as the kind's declared table decoding does.
    plain = without_fake_quantizers(model)
    with torch.no_grad():
        plain[0].weight.copy_(get_quantizer(ternary).dequantize(quantized))
    graph = export_onnx(plain, {"0": quantized}, {"signal": signal[:1]}, ["output"], {"signal": {0: "batch"}})
    assert weight_storage(graph)["0"].dtype == "UINT4"
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = plain(signal).numpy()
    assert np.allclose(session.run(None, {"signal": signal.numpy()})[0], expected, rtol=1e-5, atol=1e-6)

    # The description records the kind's kernel class, which the cost model prices it on.
    description = describe_model(plain, "toy", signal[:1], SAMPLE_RATE, weight_bits={"0": 2}, quantizer=ternary)
    layer = description.layer("0")
    assert layer.kernel_class == "lookup"  # the bit width alone would say lowbit
    assert kernel_class(layer) == "lookup"
    assert estimate(description, load_target("cortex-a72")).layers[0].kernel_class == "lookup"


# The cost model's rule before quantizers recorded their kernel class: wider than 8 bits -> fp32;
# quantizer name up to the first "-" being kmeans or pow2, below 8 bits -> lookup; 1 bit -> binary;
# 8 bits -> int8; any other width -> lowbit.
_INTEGER = {1: "binary", 4: "lowbit", 8: "int8", 32: "fp32"}
_LOOKUP = {1: "lookup", 4: "lookup", 8: "int8", 32: "fp32"}
PREVIOUS_KERNEL_CLASSES = {
    "uniform": _INTEGER,
    "uniform-asym": _INTEGER,
    "uniform-mse": _INTEGER,
    "uniform-tensor": _INTEGER,
    "pow2": _LOOKUP,
    "kmeans": _LOOKUP,
    "kmeans-group4": _LOOKUP,
    "binary": _INTEGER,
    "binary-adaptive": _INTEGER,
}


@pytest.mark.parametrize("name", sorted(PREVIOUS_KERNEL_CLASSES))
@pytest.mark.parametrize("bits", [1, 4, 8, 32])
def test_descriptions_record_the_kernel_class_the_previous_rule_gave(name, bits):
    assert name in QUANTIZERS
    model = _toy_model()
    description = describe_model(model, "toy", torch.zeros(1, 2, SAMPLE_RATE), SAMPLE_RATE, weight_bits={"0": bits}, quantizer=name)
    layer = description.layer("0")
    assert layer.kernel_class == PREVIOUS_KERNEL_CLASSES[name][bits]
    assert kernel_class(layer) == PREVIOUS_KERNEL_CLASSES[name][bits]
    assert description.layer("2").kernel_class == "fp32"  # not quantized
