"""The straight-through fake-quantizer, which trains any quantizer family (`Quantizer.fake_quantizer`'s default)."""

from __future__ import annotations

import torch

from spaces.quant.base import FakeQuantizer, QuantizedWeight
from spaces.quant.straight_through import replace_straight_through


class StraightThroughQuantizer(FakeQuantizer):
    """Any registered family: re-quantize the latent weight every forward pass, straight-through backward.

    The family's own post-training rule (scales from the current weights) is applied as is, so
    this works for every quantizer; the gradient of the quantized weight reaches the latent one
    unchanged (STE).
    """

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return replace_straight_through(latent, self.quantizer.fake_quantize(latent, self.bits).to(latent.dtype))

    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        return self.quantizer.quantize(latent.detach(), self.bits)
