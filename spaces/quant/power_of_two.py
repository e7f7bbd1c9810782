"""Power-of-two (logarithmic) weight quantization with one scale per output channel (Li et al. 2022).

Weights cluster near zero, where a logarithmic grid is dense, and multiplying by a power of two is a
shift in integer hardware. With `b` bits, one sign bit and `b - 1` magnitude bits, the levels of a
channel with scale `s = max|w|` are

    0  and  ±s * 2**-k  for k = 0 .. 2**(b-1) - 2

(`2**b - 1` distinct values; 2 bits is ternary `{-s, 0, s}`). Code layout: `sign << (b-1) | m`, where
magnitude index `m = 0` is zero (always with sign 0) and `m >= 1` stands for `2**-(m-1)`.

Rounding: a magnitude ratio `r = |w| / s` takes the exponent `round(log2 r)` (rounding in the log
domain, as the hardware would), clipped to the smallest level; a ratio below half the smallest level
becomes zero (the log domain has no midpoint with zero, so that one decision is linear).

With `k_max = 2**(b-1) - 2` the levels are the integers `0, ±2**(k_max - k)` times the step
`s * 2**-k_max`, exactly (powers of two scale floats without rounding), so `integer_weight`
writes them as int8 levels up to 4 bits (`±64` at most); wider grids exceed int8.
"""

from __future__ import annotations

import math

import torch

from spaces.quant.base import QuantizedWeight, Quantizer, check_bits
from spaces.quant.decoding import ScaledTable
from spaces.quant.integer_kernels import INT8_LARGEST_LEVEL, IntegerWeight

_POWER_OF_TWO_BITS = (2, 3, 4, 5, 6, 7, 8)
_SQRT_HALF = math.sqrt(0.5)


class PowerOfTwoQuantizer(Quantizer):
    """Sign plus power-of-two magnitude per weight, scaled by the channel's largest magnitude."""

    name = "pow2"
    allowed_bits = _POWER_OF_TWO_BITS
    decoding = ScaledTable("scale")
    table_lookup = True

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        smallest_exponent = _smallest_exponent(bits)
        channels = weight.detach().reshape(weight.shape[0], -1).float()
        scale = channels.abs().amax(dim=1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        ratio = channels.abs() / scale[:, None]
        mantissa, exponent = torch.frexp(ratio)  # ratio = mantissa * 2**exponent, mantissa in [0.5, 1)
        log2_rounded = exponent - (mantissa < _SQRT_HALF).to(exponent.dtype)
        magnitude = (-log2_rounded).clamp(0, smallest_exponent) + 1
        magnitude = torch.where(ratio >= 2.0 ** -(smallest_exponent + 1), magnitude, torch.zeros_like(magnitude))
        negative = (channels < 0) & (magnitude > 0)
        codes = (negative.to(torch.int32) << (bits - 1)) | magnitude.to(torch.int32)
        return QuantizedWeight(self.name, bits, codes.to(torch.uint8).reshape(weight.shape), {"scale": scale})

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        bits = quantized.bits
        scale = quantized.side["scale"]
        codes = quantized.codes.reshape(scale.shape[0], -1).long()
        magnitudes = _magnitude_table(bits)[codes & (2 ** (bits - 1) - 1)]
        signs = 1.0 - 2.0 * (codes >> (bits - 1)).float()
        return (signs * magnitudes * scale[:, None]).reshape(quantized.codes.shape)

    def largest_integer_level(self, bits: int) -> int | None:
        """`2**k_max`, the level of the channel's largest magnitude; None beyond int8 (5 bits and more)."""
        largest = 2 ** _smallest_exponent(bits)
        return largest if largest <= INT8_LARGEST_LEVEL else None

    def integer_weight(self, quantized: QuantizedWeight) -> IntegerWeight:
        """Levels `sign * 2**(k_max - k)` (0 for the zero code), step `scale * 2**-k_max`."""
        bits = quantized.bits
        if self.largest_integer_level(bits) is None:
            return super().integer_weight(quantized)
        smallest_exponent = _smallest_exponent(bits)
        codes = quantized.codes.to(torch.int32)
        magnitude = codes & (2 ** (bits - 1) - 1)
        levels = torch.where(magnitude > 0, 1 << (smallest_exponent + 1 - magnitude).clamp_min(0), 0)
        levels = torch.where(codes >> (bits - 1) > 0, -levels, levels)
        return IntegerWeight(levels.to(torch.int8), quantized.side["scale"] * 2.0**-smallest_exponent)


def _smallest_exponent(bits: int) -> int:
    """`k_max`: the smallest level is `scale * 2**-k_max`."""
    return 2 ** (bits - 1) - 2


def _magnitude_table(bits: int) -> torch.Tensor:
    """Magnitude index -> level / scale: 0, then 2**-k exactly (float32 holds 2**-126)."""
    return torch.tensor([0.0] + [2.0**-k for k in range(2 ** (bits - 1) - 1)], dtype=torch.float32)
