"""Adaptive binarization with learned levels (Liu, Wang, Qian 2024).

Each output channel's two levels `beta ± alpha` start at the post-training 2-means fit and are
trained: `alpha` gets the gradient summed against the signs, `beta` the summed gradient (it shifts
both levels). The sign pattern follows the latent weights, compared with the current `beta`,
and the latent weights get the gradient of their binarized value (STE).
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.quant.base import FakeQuantizer, QuantizedWeight
from spaces.quant.binary import AdaptiveBinaryQuantizer
from spaces.quant.straight_through import replace_straight_through


class LearnedBinaryQuantizer(FakeQuantizer):
    """`binary-adaptive` fake-quantizer with learnable per-channel `alpha` and `beta`.

    Args:
        quantizer: The registered `AdaptiveBinaryQuantizer`.
        bits: Must be 1.
        latent: The layer's float weight, for the initial levels.
    """

    def __init__(self, quantizer: AdaptiveBinaryQuantizer, bits: int, latent: torch.Tensor) -> None:
        super().__init__(quantizer, bits)
        initial = quantizer.quantize(latent, bits)
        self.alpha = nn.Parameter(initial.side["alpha"].clone())
        self.beta = nn.Parameter(initial.side["beta"].clone())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        rows = latent.reshape(self.alpha.shape[0], -1)
        levels = self.alpha[:, None] * self._signs(rows) + self.beta[:, None]
        return replace_straight_through(rows, levels).reshape(latent.shape)

    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        with torch.no_grad():
            upper = self._signs(latent.reshape(self.alpha.shape[0], -1)) > 0
        side = {"alpha": self.alpha.detach().clone(), "beta": self.beta.detach().clone()}
        return QuantizedWeight(self.quantizer.name, self.bits, upper.to(torch.uint8).reshape(latent.shape), side)

    def _signs(self, rows: torch.Tensor) -> torch.Tensor:
        """+1 where the latent weight is at or above its channel's `beta`, else -1 (no gradient)."""
        return torch.where(rows.detach() >= self.beta.detach()[:, None], 1.0, -1.0)
