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
"""

from __future__ import annotations

import math

import torch

from spaces.quant.base import QuantizedWeight, Quantizer, check_bits
from spaces.quant.decoding import ScaledTable

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
        smallest_exponent = 2 ** (bits - 1) - 2
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


def _magnitude_table(bits: int) -> torch.Tensor:
    """Magnitude index -> level / scale: 0, then 2**-k exactly (float32 holds 2**-126)."""
    return torch.tensor([0.0] + [2.0**-k for k in range(2 ** (bits - 1) - 1)], dtype=torch.float32)
