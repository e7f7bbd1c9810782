"""The interface of a weight fake-quantizer for quantization-aware training, and the plain STE one.

During QAT a layer keeps a latent float weight; a fake-quantizer, registered as a
`torch.nn.utils.parametrize` parametrization of that weight, turns it into the quantized weight the
layer computes with, differentiably. Its own parameters (steps, centroids, binary levels) are
trained with the network. `export` gives the codes and side tensors in exactly the format the
registered quantizer dequantizes, so the trained layer packs bit-exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from spaces.quant.base import QuantizedWeight, Quantizer, check_bits
from spaces.quant.straight_through import replace_straight_through


class FakeQuantizer(nn.Module, ABC):
    """Latent float weight -> differentiable quantized weight of one layer.

    Args:
        quantizer: The registered family whose format `export` produces.
        bits: Bits per weight code (must be allowed by the family).
    """

    def __init__(self, quantizer: Quantizer, bits: int) -> None:
        super().__init__()
        check_bits(quantizer.name, bits, quantizer.allowed_bits)
        self.quantizer = quantizer
        self.bits = bits

    @abstractmethod
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """The quantized weight the layer computes with; gradients reach `latent` and own parameters."""

    @abstractmethod
    def export(self, latent: torch.Tensor) -> QuantizedWeight:
        """Codes and side tensors of the current quantized weight, in the family's format."""

    def after_step(self, latent: torch.Tensor, step: int, anneal: float) -> None:
        """Hook run after each optimiser step (re-assignment, annealing); nothing by default.

        Args:
            step: Optimiser steps done so far.
            anneal: Fraction of the annealing schedule done, in [0, 1].
        """

    def extra_repr(self) -> str:
        return f"quantizer={self.quantizer.name}, bits={self.bits}"


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
