"""K-means centroid fine-tuning (Deep Compression style) for the k-means family, optionally soft-step.

The codebook found by post-training k-means becomes a parameter. Each weight is the centroid its
code points to, gathered from the codebook, so the gradient of a centroid is the sum of the
gradients of the weights that share it. The latent float weights also get the gradient of their
quantized value (STE), and every `reassign_every` steps each code moves to the centroid nearest
its latent weight, letting weights change cluster.

With `soft_step` (TinyWASE), the forward pass is instead the sigmoid staircase over the codebook
(`spaces.quant.soft_step`) at a temperature annealed from `temperature_start` to
`temperature_end`; codes are then the nearest centroids, which the staircase approaches as it
hardens. Either way `export` gives the sorted codebook and the codes in the `kmeans` format.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.quant.base import FakeQuantizer, QuantizedWeight
from spaces.quant.kmeans import KMeansQuantizer, channel_groups
from spaces.quant.soft_step import annealed_temperature, soft_step
from spaces.quant.straight_through import replace_straight_through


class CentroidQuantizer(FakeQuantizer):
    """K-means fake-quantizer with a learnable codebook (one per channel group).

    Args:
        quantizer: A registered `KMeansQuantizer` (its grouping and PTQ codebook are kept).
        bits: Bits per weight.
        latent: The layer's float weight, for the initial codebook and codes.
        reassign_every: Optimiser steps between re-assignments of codes to the nearest centroid.
        soft_step: Use the annealed sigmoid staircase in the forward pass.
        temperature_start, temperature_end: Soft-step temperature, relative to the level spacing.
    """

    def __init__(
        self,
        quantizer: KMeansQuantizer,
        bits: int,
        latent: torch.Tensor,
        reassign_every: int = 1,
        soft_step: bool = False,
        temperature_start: float = 0.5,
        temperature_end: float = 0.01,
    ) -> None:
        super().__init__(quantizer, bits)
        initial = quantizer.quantize(latent, bits)
        self.codebook = nn.Parameter(initial.side["codebook"].reshape(-1, 2**bits).clone())
        rows = latent.shape[0]
        self.register_buffer("group_of_row", torch.from_numpy(channel_groups(rows, self.codebook.shape[0])))
        self.register_buffer("codes", initial.codes.reshape(rows, -1).long())
        self.reassign_every = reassign_every
        self.soft_step = soft_step
        self.temperature_start, self.temperature_end = temperature_start, temperature_end
        self.temperature = temperature_start

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        rows = latent.reshape(self.codes.shape)
        codebooks = self.codebook[self.group_of_row]
        if self.soft_step:
            return soft_step(rows, codebooks, self.temperature).reshape(latent.shape)
        return replace_straight_through(rows, codebooks.gather(1, self.codes)).reshape(latent.shape)

    def after_step(self, latent: torch.Tensor, step: int, anneal: float) -> None:
        self.temperature = annealed_temperature(self.temperature_start, self.temperature_end, anneal)
        if self.soft_step or step % self.reassign_every == 0:
            self._reassign(latent)

    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        if self.soft_step:
            self._reassign(latent)
        with torch.no_grad():
            ordered, order = self.codebook.sort(dim=1, stable=True)
            rank = order.argsort(dim=1)
            codes = rank[self.group_of_row].gather(1, self.codes)
        codebook = ordered[0].clone() if self.quantizer.groups == 1 else ordered.clone()
        return QuantizedWeight(self.quantizer.name, self.bits, codes.to(torch.uint8).reshape(latent.shape), {"codebook": codebook})

    @torch.no_grad()
    def _reassign(self, latent: torch.Tensor) -> None:
        """Point every code at the centroid nearest its latent weight (ties to the lower centroid)."""
        ordered, order = self.codebook.sort(dim=1, stable=True)
        midpoints = (ordered[:, 1:] + ordered[:, :-1]) / 2
        rows = latent.detach().reshape(self.codes.shape)
        nearest = torch.searchsorted(midpoints[self.group_of_row].contiguous(), rows.contiguous(), side="left")
        self.codes.copy_(order[self.group_of_row].gather(1, nearest))
