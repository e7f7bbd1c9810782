import pytest
import torch

from spaces.quant import QuantizationError, UniformQuantizer, get_quantizer


@pytest.fixture
def weight():
    return torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_levels_per_channel_fit_in_bits(weight, bits):
    quantized = UniformQuantizer().quantize(weight, bits)
    assert int(quantized.codes.max()) < 2**bits
    dequantized = UniformQuantizer().dequantize(quantized)
    for channel in dequantized:
        assert channel.unique().numel() <= 2**bits


def test_exact_on_representable_values():
    scale = torch.tensor([0.5, 0.25])[:, None]
    levels = torch.tensor([[-7.0, -3.0, 0.0, 7.0], [7.0, 1.0, -2.0, -7.0]])
    weight = levels * scale
    assert torch.equal(UniformQuantizer().fake_quantize(weight, 4), weight)


def test_error_shrinks_with_bits(weight):
    errors = [(UniformQuantizer().fake_quantize(weight, bits) - weight).pow(2).mean().item() for bits in (2, 3, 4, 6, 8)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


def test_idempotent(weight):
    once = UniformQuantizer().fake_quantize(weight, 3)
    assert torch.allclose(UniformQuantizer().fake_quantize(once, 3), once, atol=1e-7)


def test_zero_channel_does_not_divide_by_zero():
    weight = torch.zeros(2, 5)
    assert torch.equal(UniformQuantizer().fake_quantize(weight, 4), weight)


@pytest.mark.parametrize("bits", [0, 1, 9, 32])
def test_impossible_bits_rejected(weight, bits):
    with pytest.raises(QuantizationError, match=f"bits={bits}"):
        UniformQuantizer().quantize(weight, bits)


def test_unknown_quantizer_names_available():
    with pytest.raises(QuantizationError, match="unknown quantizer 'fancy'.*uniform"):
        get_quantizer("fancy")
