"""Learned step size quantization (LSQ, Esser et al. 2020) for the uniform family.

The per-row step (`scale`) starts at the post-training value of the registered uniform quantizer
(min-max or MSE clipping, per channel or per tensor) and becomes a parameter. The forward pass is
`(clamp(round(w / s) + z, low, high) - z) * s`, with rounding passed straight through, so

- a weight inside the grid gets the gradient of its quantized value (STE), one outside gets none;
- the step gets LSQ's gradient `round(w/s) - w/s` inside, the clipped level outside, scaled by
  `1 / sqrt(weights_per_row * high)` to keep its updates in proportion to the weights';
- the asymmetric variant also learns its zero point `z`, rounded straight through so it stays
  an integer, as the format stores it.

Training the step moves the clipping range, so no separate clipping search is needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spaces.quant.base import FakeQuantizer, QuantizedWeight
from spaces.quant.straight_through import round_straight_through, scale_gradient
from spaces.quant.uniform import UniformQuantizer, centre

_SMALLEST_STEP = 1e-8


class LearnedStepQuantizer(FakeQuantizer):
    """Uniform fake-quantizer with a learnable step per row (and zero point when asymmetric).

    Args:
        quantizer: A registered `UniformQuantizer` (its layout and PTQ initialisation are kept).
        bits: Bits per weight.
        latent: The layer's float weight, for the initial step.
    """

    def __init__(self, quantizer: UniformQuantizer, bits: int, latent: torch.Tensor) -> None:
        super().__init__(quantizer, bits)
        initial = quantizer.quantize(latent, bits)
        self.symmetric = quantizer.symmetric
        self.scale = nn.Parameter(initial.side["scale"].clone())
        if self.symmetric:
            self.high = quantizer.largest_level(bits)  # 64 at 8 bits on the integer kernels' range
            self.low = -self.high
        else:
            self.low, self.high = 0, 2**bits - 1
            self.zero_point = nn.Parameter(initial.side["zero_point"].clone())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        levels, scale, offset = self._levels(latent, trainable=True)
        return ((levels - offset) * scale).reshape(latent.shape)

    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        with torch.no_grad():
            levels, scale, offset = self._levels(latent, trainable=False)
            codes = levels if not self.symmetric else levels + centre(self.bits)
            side = {"scale": scale.reshape(-1).clone()}
            if not self.symmetric:
                side["zero_point"] = offset.reshape(-1).clone()
        return QuantizedWeight(self.quantizer.name, self.bits, codes.to(torch.uint8).reshape(latent.shape), side)

    def _levels(self, latent: torch.Tensor, trainable: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer levels (as floats) of the rows of `latent`, with the step and zero point used."""
        rows = latent.reshape(self.scale.shape[0], -1)
        scale = self.scale.abs().clamp_min(_SMALLEST_STEP)[:, None]
        if trainable:
            scale = scale_gradient(scale, 1.0 / math.sqrt(rows.shape[1] * self.high))
        offset = round_straight_through(self.zero_point)[:, None] if not self.symmetric else torch.zeros_like(scale)
        levels = torch.clamp(round_straight_through(rows / scale) + offset, self.low, self.high)
        return levels, scale, offset
