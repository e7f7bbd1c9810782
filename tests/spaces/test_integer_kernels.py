"""Which quantizers have an exact int8 form, and the weight range 8-bit activations imply."""

import pytest
import torch
from torch import nn

from spaces.plan import CompressionPlan, LayerQuantization
from spaces.quant import INTEGER_KERNEL_LEVEL, QUANTIZERS, QuantizationError, get_quantizer
from spaces.quant.qat import attach_fake_quantizers, export_quantized

WEIGHT = torch.randn(12, 5, 3, generator=torch.Generator().manual_seed(0)) ** 3  # heavy-tailed
INTEGER_CASES = [
    (name, bits)
    for name, quantizer in QUANTIZERS.items()
    for bits in quantizer.allowed_bits
    if quantizer.largest_integer_level(bits) is not None
]


def test_the_families_with_an_exact_int8_form_are_the_scaled_integer_grids():
    forms = {name for name, _ in INTEGER_CASES}
    assert forms == {"uniform", "uniform-mse", "uniform-tensor", "uniform-reduced", "uniform-mse-reduced", "uniform-tensor-reduced", "pow2", "binary"}
    assert {bits for name, bits in INTEGER_CASES if name == "pow2"} == {2, 3, 4}  # 5 bits: levels up to 2**14


@pytest.mark.parametrize("name, bits", INTEGER_CASES)
def test_int8_levels_times_the_scale_are_the_dequantized_weights_bit_for_bit(name, bits):
    quantizer = get_quantizer(name)
    quantized = quantizer.quantize(WEIGHT, bits)
    integer = quantizer.integer_weight(quantized)
    assert integer.levels.dtype == torch.int8 and integer.levels.shape == WEIGHT.shape
    assert int(integer.levels.abs().max()) <= quantizer.largest_integer_level(bits)
    rows = integer.levels.reshape(integer.scale.shape[0], -1).float() * integer.scale[:, None]
    assert torch.equal(rows.reshape(WEIGHT.shape), quantizer.dequantize(quantized))


@pytest.mark.parametrize("name, bits", [("kmeans", 4), ("kmeans-group4", 8), ("binary-adaptive", 1), ("uniform-asym", 4), ("pow2", 5)])
def test_codebooks_offsets_and_wide_power_of_two_grids_have_no_int8_form(name, bits):
    quantizer = get_quantizer(name)
    assert quantizer.largest_integer_level(bits) is None and not quantizer.runs_on_integer_kernels(bits)
    with pytest.raises(QuantizationError, match=f"'{name}': {bits}-bit codes have no exact int8 form"):
        quantizer.integer_weight(quantizer.quantize(WEIGHT, bits))


def test_the_reduced_grid_stops_at_the_kernels_level_and_dequantizes_as_the_plain_one():
    reduced, plain = get_quantizer("uniform-reduced"), get_quantizer("uniform")
    codes = reduced.quantize(WEIGHT, 8)
    levels = codes.codes.int() - 127  # the plain 8-bit grid's centre: the same packed format
    assert int(levels.abs().max()) == INTEGER_KERNEL_LEVEL
    assert torch.equal(plain.dequantize(codes), reduced.dequantize(codes))
    step = WEIGHT.reshape(12, -1).abs().amax(dim=1) / INTEGER_KERNEL_LEVEL
    assert torch.allclose(codes.side["scale"], step)
    assert torch.equal(reduced.quantize(WEIGHT, 6).codes, plain.quantize(WEIGHT, 6).codes)  # below 8 bits nothing changes


@pytest.mark.parametrize("bits, activation_bits, quantizer, expected", [
    (8, 8, "uniform", "uniform-reduced"),
    (8, 8, "uniform-mse", "uniform-mse-reduced"),
    (8, 8, "uniform-tensor", "uniform-tensor-reduced"),
    (7, 8, "uniform", "uniform"),
    (8, 8, "kmeans", "kmeans"),
    (8, 4, "uniform", "uniform"),
    (8, 32, "uniform", "uniform"),
])  # fmt: skip
def test_eight_bit_activations_put_eight_bit_uniform_layers_on_the_kernels_range(bits, activation_bits, quantizer, expected):
    plan = CompressionPlan({"conv": LayerQuantization(bits, quantizer)}, activation_bits=activation_bits)
    assert plan.layers["conv"] == LayerQuantization(bits, expected)


def test_a_trial_with_eight_bit_activations_trains_and_packs_on_the_kernels_range():
    model = nn.Sequential(nn.Conv1d(4, 6, 3), nn.ReLU(), nn.Conv1d(6, 2, 1))
    plan = CompressionPlan({"0": LayerQuantization(8), "2": LayerQuantization(8)}, activation_bits=8)
    attach_fake_quantizers(model, plan.layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # the learned steps move: the levels must still stay in range
        optimizer.zero_grad()
        model(torch.randn(2, 4, 20)).square().mean().backward()
        optimizer.step()
    for name, weight in export_quantized(model).items():
        quantizer = get_quantizer(weight.quantizer)
        assert weight.quantizer == "uniform-reduced"
        assert int(quantizer.integer_weight(weight).levels.abs().max()) <= INTEGER_KERNEL_LEVEL
        assert torch.equal(model.get_submodule(name).weight.detach(), quantizer.dequantize(weight))
