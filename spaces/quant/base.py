"""The one interface every weight quantizer family implements.

A quantizer turns a float weight tensor into integer codes of `bits` bits plus a few side tensors
(scales, offsets or a codebook), and back. The packed file stores exactly the codes and the side
tensors, so `dequantize(quantize(w))` is what the deployed model computes with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch

SUPPORTED_WEIGHT_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 32)
"""Bit widths a layer may take: 1..8 are quantized codes, 32 keeps the layer in FP32."""
SIDE_BITS = (32, 16)
"""Storage precisions of side data (scales, zero points, codebooks, biases, norm terms): float32 or float16."""


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
        side_bits: Precision the side tensors are stored at: 32, or 16 when their values are
            float16 numbers (`with_half_side`), which the packed file then stores in half the bytes.
    """

    quantizer: str
    bits: int
    codes: torch.Tensor
    side: dict[str, torch.Tensor]
    side_bits: int = 32

    @property
    def overhead_bits(self) -> int:
        """Bits of side data, as stored."""
        return self.side_bits * sum(tensor.numel() for tensor in self.side.values())

    def with_half_side(self, label: str) -> QuantizedWeight:
        """The same codes with side tensors rounded to float16 values (stored at 16 bits each)."""
        side = {name: round_to_half(tensor, f"{label} {name}") for name, tensor in self.side.items()}
        return replace(self, side=side, side_bits=16)


def round_to_half(tensor: torch.Tensor, label: str) -> torch.Tensor:
    """`tensor` rounded to the nearest float16 values, kept as float32 (what a float16 file stores).

    Raises:
        QuantizationError: A finite value outside float16's range (it would be stored as infinity).
    """
    rounded = tensor.detach().to(torch.float16).to(torch.float32)
    if bool((torch.isinf(rounded) & torch.isfinite(tensor)).any()):
        raise QuantizationError(f"{label}: values beyond float16's range (max 65504); use space.side_bits: 32")
    return rounded


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
