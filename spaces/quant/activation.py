"""Activation fake-quantization with a calibrated, then learned, step size (LSQ, Esser et al. 2020).

TinyWASE (Huang et al. 2022) runs its quantized model with 8-bit activations. An activation
quantizer goes through two modes:

- "calibrate" (after construction or `calibrate()`): the forward pass returns its input unchanged
  and records the smallest and largest value seen over all batches since calibration began.
- "quantize" (after `freeze()`): the signedness and the initial step are fixed from the observed
  range, then the forward pass rounds to the grid `step * [q_min, q_max]`. Rounding passes gradients
  straight through (STE), so both the input and the learnable `step` get gradients; the step's
  gradient is scaled by `1 / sqrt(numel * q_max)` as in LSQ, to keep its updates in proportion.

An observed minimum `>= 0` (e.g. after a ReLU) gives the unsigned grid `0 .. 2**bits - 1`;
otherwise the signed grid `-2**(bits-1) .. 2**(bits-1) - 1`. The mode is a buffer, so it is saved
and restored with the state dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spaces.quant.base import QuantizationError, check_bits
from spaces.quant.straight_through import round_straight_through, scale_gradient

_ACTIVATION_BITS = (2, 3, 4, 5, 6, 7, 8)
_SMALLEST_STEP = 1e-8


class ActivationQuantizer(nn.Module):
    """Per-tensor activation fake-quantizer: min/max calibration, then an LSQ-learned step.

    Args:
        bits: Bits per activation (default 8).
    """

    allowed_bits = _ACTIVATION_BITS

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        check_bits("activation", bits, _ACTIVATION_BITS)
        self.bits = bits
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("observed_min", torch.tensor(math.inf))
        self.register_buffer("observed_max", torch.tensor(-math.inf))
        self.register_buffer("signed", torch.tensor(False))
        self.register_buffer("frozen", torch.tensor(False))

    @property
    def mode(self) -> str:
        """"calibrate" while observing ranges, "quantize" once frozen."""
        return "quantize" if bool(self.frozen) else "calibrate"

    @property
    def levels(self) -> tuple[int, int]:
        """Smallest and largest integer level of the grid (fixed by `freeze`)."""
        if bool(self.signed):
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def calibrate(self) -> ActivationQuantizer:
        """Forget the observed range and go back to observing (inputs pass through unchanged)."""
        self.observed_min.fill_(math.inf)
        self.observed_max.fill_(-math.inf)
        self.frozen.fill_(False)
        return self

    def freeze(self) -> ActivationQuantizer:
        """End calibration: choose signedness and set `step` so the grid spans the observed range."""
        if not torch.isfinite(self.observed_min):
            raise QuantizationError("activation quantizer: freeze() before any calibration batch")
        self.signed.fill_(bool(self.observed_min < 0))
        largest = torch.maximum(self.observed_min.abs(), self.observed_max.abs())
        step = largest / self.levels[1]
        with torch.no_grad():
            self.step.copy_(torch.where(step > 0, step, torch.ones_like(step)))
        self.frozen.fill_(True)
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not bool(self.frozen):
            with torch.no_grad():
                self.observed_min.copy_(torch.minimum(self.observed_min, inputs.min()))
                self.observed_max.copy_(torch.maximum(self.observed_max, inputs.max()))
            return inputs
        low, high = self.levels
        step = scale_gradient(self.step.clamp_min(_SMALLEST_STEP), 1.0 / math.sqrt(inputs.numel() * high))
        scaled = torch.clamp(inputs / step, low, high)
        return round_straight_through(scaled) * step

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode}, signed={bool(self.signed)}"

