"""The one interface every weight quantizer family implements.

A quantizer turns a float weight tensor into integer codes of `bits` bits plus a few side tensors
(scales, offsets or a codebook), and back. The packed file stores exactly the codes and the side
tensors, so `dequantize(quantize(w))` is what the deployed model computes with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

SUPPORTED_WEIGHT_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 32)
"""Bit widths a layer may take: 1..8 are quantized codes, 32 keeps the layer in FP32."""


class QuantizationError(ValueError):
    """A quantizer was asked for something it cannot do (unknown name, impossible bit width)."""


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer codes of one weight tensor with the side data needed to dequantize them.

    Attributes:
        quantizer: Name of the family that produced it (the packed file records it).
        bits: Bits per code.
        codes: Unsigned integer codes in `[0, 2**bits)`, shape of the weight, dtype uint8.
        side: Named float32 side tensors (e.g. per-channel `scale`), stored in the packed file.
    """

    quantizer: str
    bits: int
    codes: torch.Tensor
    side: dict[str, torch.Tensor]

    @property
    def overhead_bits(self) -> int:
        """Bits of side data, as stored (float32 each)."""
        return 32 * sum(tensor.numel() for tensor in self.side.values())


class Quantizer(ABC):
    """A weight quantizer family (uniform, power-of-two, k-means, binary...)."""

    name: str
    allowed_bits: tuple[int, ...]

    @abstractmethod
    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        """Codes and side data for `weight` at `bits` bits per weight."""

    @abstractmethod
    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        """The float weights the codes stand for (what inference computes with)."""

    def fake_quantize(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """Round-trip `weight` through the quantizer."""
        return self.dequantize(self.quantize(weight, bits))


def check_bits(quantizer: str, bits: int, allowed: tuple[int, ...]) -> None:
    """Raise a `QuantizationError` naming the quantizer and the bit width when `bits` is not allowed."""
    if bits not in allowed:
        raise QuantizationError(f"quantizer {quantizer!r}: bits={bits} not supported; allowed: {list(allowed)}")
