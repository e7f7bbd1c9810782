import functools
import itertools

import numpy as np
import pytest
import torch

from spaces.quant import (
    QUANTIZERS,
    SUPPORTED_WEIGHT_BITS,
    AdaptiveBinaryQuantizer,
    BinaryQuantizer,
    KMeansQuantizer,
    PowerOfTwoQuantizer,
    QuantizationError,
    UniformQuantizer,
    get_quantizer,
    pack_weights,
    unpack_weights,
)

CASES = [(name, bits) for name, quantizer in QUANTIZERS.items() for bits in quantizer.allowed_bits]
ONE_CODEBOOK_PER_LAYER = ("kmeans", "uniform-tensor")


def _weight(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _student_t(*shape: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.distributions.StudentT(3.0).sample(shape)


def _mse(quantizer, weight: torch.Tensor, bits: int) -> float:
    return (quantizer.fake_quantize(weight, bits) - weight).pow(2).mean().item()


WEIGHT = _weight(12, 6, 5)


@functools.cache
def _quantized(name: str, bits: int):
    return get_quantizer(name).quantize(WEIGHT, bits)


def test_every_quantizer_is_registered_under_its_own_name():
    assert set(QUANTIZERS) == {
        "uniform", "uniform-asym", "uniform-mse", "uniform-tensor", "pow2",
        "kmeans", "kmeans-group4", "binary", "binary-adaptive",
        "uniform-reduced", "uniform-mse-reduced", "uniform-tensor-reduced",
    }
    for name, quantizer in QUANTIZERS.items():
        assert quantizer.name == name
        assert get_quantizer(name) is quantizer


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_allowed_bits_are_supported_quantized_widths(name):
    allowed = QUANTIZERS[name].allowed_bits
    assert allowed and set(allowed) <= set(SUPPORTED_WEIGHT_BITS) - {32}


@pytest.mark.parametrize("name, bits", CASES)
def test_codes_fit_in_bits(name, bits):
    quantized = _quantized(name, bits)
    assert quantized.quantizer == name and quantized.bits == bits
    assert quantized.codes.dtype == torch.uint8 and quantized.codes.shape == WEIGHT.shape
    assert int(quantized.codes.max()) < 2**bits
    assert all(tensor.dtype == torch.float32 for tensor in quantized.side.values())


@pytest.mark.parametrize("name, bits", CASES)
def test_distinct_levels_fit_in_bits(name, bits):
    dequantized = get_quantizer(name).dequantize(_quantized(name, bits))
    assert dequantized.dtype == torch.float32 and dequantized.shape == WEIGHT.shape
    for channel in dequantized:
        assert channel.unique().numel() <= 2**bits
    if name in ONE_CODEBOOK_PER_LAYER:
        assert dequantized.unique().numel() <= 2**bits


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_group_codebooks_each_fit_in_bits(bits):
    quantized = get_quantizer("kmeans-group4").quantize(WEIGHT, bits)
    assert quantized.side["codebook"].shape == (4, 2**bits)
    dequantized = get_quantizer("kmeans-group4").dequantize(quantized)
    for group in dequantized.reshape(4, 3, -1):
        assert group.unique().numel() <= 2**bits


@pytest.mark.parametrize("name, bits", CASES)
def test_idempotent(name, bits):
    quantizer = get_quantizer(name)
    once = quantizer.dequantize(_quantized(name, bits))
    assert torch.allclose(quantizer.fake_quantize(once, bits), once, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, bits", CASES)
def test_packing_round_trip_is_bit_exact(name, bits):
    quantizer = get_quantizer(name)
    quantized = quantizer.quantize(_weight(7, 3, 5, seed=bits), bits)
    restored = unpack_weights(pack_weights({"layer.weight": quantized}))["layer.weight"]
    assert restored.quantizer == name and restored.bits == bits
    assert torch.equal(restored.codes, quantized.codes)
    assert torch.equal(get_quantizer(restored.quantizer).dequantize(restored), quantizer.dequantize(quantized))


@pytest.mark.parametrize("name, bits", CASES)
def test_fewer_distinct_weights_than_levels(name, bits):
    weight = torch.tensor([[0.5, -0.25, 0.5, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    dequantized = get_quantizer(name).fake_quantize(weight, bits)
    assert torch.isfinite(dequantized).all()
    if name.startswith("kmeans") and 2**bits >= 3:
        assert torch.equal(dequantized, weight)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_bits_outside_allowed_set_rejected(name):
    quantizer = get_quantizer(name)
    for bits in sorted({0, 9, *SUPPORTED_WEIGHT_BITS} - set(quantizer.allowed_bits)):
        with pytest.raises(QuantizationError, match=f"quantizer '{name}': bits={bits} not supported"):
            quantizer.quantize(WEIGHT, bits)


def test_unknown_quantizer_lists_available():
    with pytest.raises(QuantizationError, match="unknown quantizer 'ternary'.*'binary'.*'kmeans'.*'pow2'"):
        get_quantizer("ternary")


def test_bad_constructor_arguments_rejected():
    with pytest.raises(QuantizationError, match="clipping='percentile'"):
        UniformQuantizer(clipping="percentile")
    with pytest.raises(QuantizationError, match="groups=0"):
        KMeansQuantizer(groups=0)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_default_uniform_is_symmetric_per_channel_min_max(bits):
    weight = _student_t(9, 20)
    q_max = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=1) / q_max
    codes = (torch.round(weight / scale[:, None]).clamp(-q_max, q_max) + q_max).to(torch.uint8)
    quantized = get_quantizer("uniform").quantize(weight, bits)
    assert torch.equal(quantized.codes, codes)
    assert quantized.side.keys() == {"scale"} and torch.equal(quantized.side["scale"], scale)


def test_per_tensor_uniform_has_one_scale():
    quantized = get_quantizer("uniform-tensor").quantize(WEIGHT, 4)
    assert quantized.side["scale"].shape == (1,)
    assert quantized.side["scale"].item() == pytest.approx(WEIGHT.abs().max().item() / 7)


@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_asymmetric_beats_symmetric_on_positive_weights(bits):
    weight = torch.rand(16, 50, generator=torch.Generator().manual_seed(bits)) + 0.5
    quantized = get_quantizer("uniform-asym").quantize(weight, bits)
    assert set(quantized.side) == {"scale", "zero_point"}
    assert torch.equal(quantized.codes.reshape(16, -1).amax(dim=1), torch.full((16,), 2**bits - 1, dtype=torch.uint8))
    assert _mse(get_quantizer("uniform-asym"), weight, bits) < _mse(get_quantizer("uniform"), weight, bits)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_clipping_beats_min_max_with_outliers(bits):
    weight = _weight(8, 200, seed=bits)
    weight[:, 0] = 8.0
    assert _mse(get_quantizer("uniform-mse"), weight, bits) < _mse(get_quantizer("uniform"), weight, bits)


@pytest.mark.parametrize("bits", [2, 4, 6])
def test_mse_clipping_never_worse_than_min_max(bits):
    weight = _student_t(6, 40, seed=bits)
    assert _mse(get_quantizer("uniform-mse"), weight, bits) <= _mse(get_quantizer("uniform"), weight, bits)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_power_of_two_levels(bits):
    quantizer = PowerOfTwoQuantizer()
    quantized = quantizer.quantize(_student_t(8, 60), bits)
    ratios = (quantizer.dequantize(quantized) / quantized.side["scale"][:, None]).abs()
    nonzero = ratios[ratios > 0]
    exponents = torch.log2(nonzero)
    assert torch.equal(exponents, exponents.round())
    assert exponents.max() == 0 and exponents.min() >= -(2 ** (bits - 1) - 2)


def test_power_of_two_rounds_in_the_log_domain():
    weight = torch.tensor([[1.0, 0.72, -0.70, 0.2, 0.12, -0.3]])
    expected = torch.tensor([[1.0, 1.0, -0.5, 0.25, 0.0, -0.25]])
    assert torch.equal(PowerOfTwoQuantizer().fake_quantize(weight, 3), expected)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_kmeans_beats_uniform_on_heavy_tails(bits):
    weight = _student_t(32, 64, 3)
    assert _mse(KMeansQuantizer(), weight, bits) < _mse(UniformQuantizer(), weight, bits)


def _optimal_squared_error(values: np.ndarray, clusters: int) -> float:
    """Textbook O(k n^2) dynamic programme for 1-D k-means."""
    ordered = np.sort(values)
    sums, squares = np.r_[0, np.cumsum(ordered)], np.r_[0, np.cumsum(ordered**2)]
    cost = np.full((clusters + 1, ordered.size + 1), np.inf)
    cost[0, 0] = 0.0
    for k, end in itertools.product(range(1, clusters + 1), range(1, ordered.size + 1)):
        cost[k, end] = min(
            cost[k - 1, start] + squares[end] - squares[start] - (sums[end] - sums[start]) ** 2 / (end - start)
            for start in range(end)
        )
    return float(cost[clusters, ordered.size])


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_codebook_is_optimal_on_small_layers(seed):
    weight = _student_t(3, 10, seed=seed)
    quantized = KMeansQuantizer().quantize(weight, 2)
    error = (KMeansQuantizer().dequantize(quantized) - weight).double().pow(2).sum().item()
    assert error == pytest.approx(_optimal_squared_error(weight.double().numpy().ravel(), 4), rel=1e-5)


def test_kmeans_large_layer_is_deterministic_and_accurate():
    weight = _student_t(64, 320)
    first, second = KMeansQuantizer().quantize(weight, 3), KMeansQuantizer().quantize(weight, 3)
    assert torch.equal(first.codes, second.codes) and torch.equal(first.side["codebook"], second.side["codebook"])
    assert first.side["codebook"].shape == (8,)
    assert _mse(KMeansQuantizer(), weight, 3) < 0.5 * _mse(UniformQuantizer(), weight, 3)


def test_kmeans_pads_codebook_with_the_last_distinct_value():
    weight = torch.tensor([[0.3, -0.1], [0.3, 0.3]])
    quantized = KMeansQuantizer().quantize(weight, 2)
    assert quantized.side["codebook"].tolist() == pytest.approx([-0.1, 0.3, 0.3, 0.3])


def test_kmeans_groups_capped_at_channel_count():
    quantized = get_quantizer("kmeans-group4").quantize(_weight(2, 9), 2)
    assert quantized.side["codebook"].shape == (2, 4)


def test_binary_codes_are_one_bit_and_equal_sign_times_mean_magnitude():
    weight = _weight(6, 4, 3)
    quantized = BinaryQuantizer().quantize(weight, 1)
    assert set(quantized.codes.unique().tolist()) <= {0, 1}
    alpha = weight.abs().reshape(6, -1).mean(dim=1)
    assert torch.allclose(BinaryQuantizer().dequantize(quantized), weight.sign() * alpha[:, None, None])


def test_adaptive_binary_levels_are_the_means_above_and_below_the_threshold():
    weight = torch.rand(5, 40, generator=torch.Generator().manual_seed(0)) ** 3 + 0.2
    quantized = AdaptiveBinaryQuantizer().quantize(weight, 1)
    alpha, beta = quantized.side["alpha"], quantized.side["beta"]
    upper = weight >= beta[:, None]
    assert torch.equal(quantized.codes.bool(), upper)
    for row, mask, a, b in zip(weight, upper, alpha, beta):
        assert (b + a).item() == pytest.approx(row[mask].mean().item(), rel=1e-5)
        assert (b - a).item() == pytest.approx(row[~mask].mean().item(), rel=1e-5)
    assert _mse(AdaptiveBinaryQuantizer(), weight, 1) < _mse(BinaryQuantizer(), weight, 1)
