"""1-bit weight quantization: static and adaptive binarization per output channel (Liu, Wang, Qian 2024).

Static ("binary"): `w_b = alpha_c * sign(w)` with `alpha_c = mean|w_c|`, the least-squares scale
for the sign pattern (XNOR-Net). Code 1 is `+alpha_c`, code 0 is `-alpha_c`; `sign(0) = +1`.

Adaptive ("binary-adaptive"): `w_b = alpha_c * sign(w - beta_c) + beta_c`, two levels
`beta_c ± alpha_c` that need not be symmetric about zero. `alpha` and `beta` are the side tensors,
and the parameters quantization-aware training learns. Their post-training initialisation starts
at `beta_c = mean(w_c)` and runs 2-means (Lloyd) on the channel: the levels become the means of the
weights above and below the threshold `beta_c`, which is then their midpoint. That is the
least-squares pair for its own threshold and a fixed point, so re-quantizing changes nothing
(`alpha_c = mean|w_c - beta_c|` at the mean alone moves the levels of an unbalanced channel).

Static binarization is the int8 levels `±1` times `alpha` (`integer_weight`); adaptive
binarization's offset `beta` is no multiple of a step, so it has no integer form.
"""

from __future__ import annotations

import torch

from spaces.quant.base import FakeQuantizer, QatOptions, QuantizedWeight, Quantizer, check_bits
from spaces.quant.decoding import ScaledTable
from spaces.quant.integer_kernels import IntegerWeight

_BINARY_BITS = (1,)
_LLOYD_ITERATIONS = 30


class BinaryQuantizer(Quantizer):
    """Static binarization: sign times the channel's mean magnitude."""

    name = "binary"
    allowed_bits = _BINARY_BITS
    decoding = ScaledTable("alpha")

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        channels = weight.detach().reshape(weight.shape[0], -1).float()
        alpha = channels.abs().mean(dim=1)
        codes = (channels >= 0).to(torch.uint8).reshape(weight.shape)
        return QuantizedWeight(self.name, bits, codes, {"alpha": alpha})

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        alpha = quantized.side["alpha"]
        signs = 2.0 * quantized.codes.reshape(alpha.shape[0], -1).float() - 1.0
        return (alpha[:, None] * signs).reshape(quantized.codes.shape)

    def largest_integer_level(self, bits: int) -> int | None:
        return 1

    def integer_weight(self, quantized: QuantizedWeight) -> IntegerWeight:
        """Levels `2 * code - 1` (the sign), scale `alpha`."""
        return IntegerWeight(2 * quantized.codes.to(torch.int8) - 1, quantized.side["alpha"])


class AdaptiveBinaryQuantizer(Quantizer):
    """Adaptive binarization: per-channel scale `alpha` and offset `beta` around the sign."""

    name = "binary-adaptive"
    allowed_bits = _BINARY_BITS
    decoding = ScaledTable("alpha", offset="beta")

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        channels = weight.detach().reshape(weight.shape[0], -1).float()
        upper = channels >= channels.mean(dim=1, keepdim=True)
        for _ in range(_LLOYD_ITERATIONS):
            alpha, beta = _two_level_fit(channels, upper)
            updated = channels >= beta[:, None]
            converged = torch.equal(updated, upper)
            upper = updated
            if converged:
                break
        codes = upper.to(torch.uint8).reshape(weight.shape)
        return QuantizedWeight(self.name, bits, codes, {"alpha": alpha, "beta": beta})

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        alpha, beta = quantized.side["alpha"], quantized.side["beta"]
        signs = 2.0 * quantized.codes.reshape(alpha.shape[0], -1).float() - 1.0
        return (alpha[:, None] * signs + beta[:, None]).reshape(quantized.codes.shape)

    def fake_quantizer(self, bits: int, latent: torch.Tensor, options: QatOptions) -> FakeQuantizer:
        """Learned per-channel levels, starting from this quantizer's 2-means fit of `latent`."""
        from spaces.quant.binary_qat import LearnedBinaryQuantizer  # binary_qat imports this module

        return LearnedBinaryQuantizer(self, bits, latent)


def _two_level_fit(channels: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`alpha`, `beta` whose levels `beta ± alpha` are the means of the upper and lower weights.

    An empty side (a constant channel) takes the other side's mean, giving `alpha = 0`.
    """
    upper_count = upper.sum(dim=1)
    lower_count = upper.shape[1] - upper_count
    upper_mean = torch.where(upper, channels, 0.0).sum(dim=1) / upper_count.clamp_min(1)
    lower_mean = torch.where(upper, 0.0, channels).sum(dim=1) / lower_count.clamp_min(1)
    upper_mean = torch.where(upper_count > 0, upper_mean, lower_mean)
    lower_mean = torch.where(lower_count > 0, lower_mean, upper_mean)
    return (upper_mean - lower_mean) / 2, (upper_mean + lower_mean) / 2
