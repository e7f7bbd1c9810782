"""Symmetric uniform quantization with one scale per output channel (Li et al. 2022).

Levels are the integers `-q..q` with `q = 2**(bits-1) - 1` times the channel's scale
`max|w| / q`: zero is exact, the range is symmetric, and at most `2**bits - 1` levels are used.
Codes are stored shifted by `q`, so they are unsigned and fit in `bits` bits.
"""

from __future__ import annotations

import torch

from spaces.quant.base import QuantizedWeight, Quantizer, check_bits

_UNIFORM_BITS = (2, 3, 4, 5, 6, 7, 8)


class UniformQuantizer(Quantizer):
    """Per-output-channel symmetric min-max uniform quantizer."""

    name = "uniform"

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, _UNIFORM_BITS)
        q_max = 2 ** (bits - 1) - 1
        channels = weight.detach().reshape(weight.shape[0], -1).float()
        scale = channels.abs().amax(dim=1) / q_max
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        levels = torch.round(channels / scale[:, None]).clamp(-q_max, q_max)
        codes = (levels + q_max).to(torch.uint8).reshape(weight.shape)
        return QuantizedWeight(self.name, bits, codes, {"scale": scale})

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        q_max = 2 ** (quantized.bits - 1) - 1
        scale = quantized.side["scale"]
        levels = quantized.codes.reshape(scale.shape[0], -1).float() - q_max
        return (levels * scale[:, None]).reshape(quantized.codes.shape)
