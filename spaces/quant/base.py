"""The interface every weight quantizer family implements, and that of its trainable counterpart.

A quantizer turns a float weight tensor into integer codes of `bits` bits plus a few side tensors
(scales, offsets or a codebook), and back. The packed file stores exactly the codes and the side
tensors, so `dequantize(quantize(w))` is what the deployed model computes with.

A family also owns how it is trained, exported and priced, so that adding one means writing its
module and registering it in `spaces.quant`: `Quantizer.fake_quantizer` gives the `FakeQuantizer`
that quantization-aware training attaches to a layer, `Quantizer.decoding` says how an ONNX graph
decodes its codes, `Quantizer.kernel_class` which kernel the cost model prices its layers on,
`Quantizer.integer_weight` whether its codes run on onnxruntime's integer kernels exactly
(`spaces.quant.integer_kernels`). The two interfaces live together because each refers to the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch
from torch import nn

from spaces.description import weight_kernel_class
from spaces.quant.decoding import Decoding
from spaces.quant.integer_kernels import INTEGER_KERNEL_LEVEL, IntegerWeight

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
    """A weight quantizer family (uniform, power-of-two, k-means, binary...).

    Attributes:
        name: The name it is registered under (and the packed file records).
        allowed_bits: Bit widths its codes may have.
        decoding: How an exported ONNX graph decodes its codes (`spaces.quant.decoding`); None
            when it has no integer decoding, which makes exporting its layers an error.
        table_lookup: Inference decodes its codes through a table of levels, so below 8 bits its
            layers run on the cost model's "lookup" kernel rather than the integer ones.
    """

    name: str
    allowed_bits: tuple[int, ...]
    decoding: Decoding | None = None
    table_lookup: bool = False

    @abstractmethod
    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        """Codes and side data for `weight` at `bits` bits per weight."""

    @abstractmethod
    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        """The float weights the codes stand for (what inference computes with)."""

    def fake_quantize(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """Round-trip `weight` through the quantizer."""
        return self.dequantize(self.quantize(weight, bits))

    def fake_quantizer(self, bits: int, latent: torch.Tensor, options: QatOptions) -> FakeQuantizer:
        """The trainable fake-quantizer of a layer at `bits`, initialised from its float weight `latent`.

        By default the family's own rule re-applied every step with a straight-through gradient,
        which trains any family; one with parameters worth learning returns its own.
        """
        from spaces.quant.fake_quant import StraightThroughQuantizer  # it subclasses FakeQuantizer, below

        return StraightThroughQuantizer(self, bits)

    def kernel_class(self, bits: int) -> str:
        """The cost model's kernel family for a layer of `bits`-bit codes (`spaces.description.KERNEL_CLASSES`)."""
        return weight_kernel_class(bits, table_lookup=self.table_lookup)

    def largest_integer_level(self, bits: int) -> int | None:
        """The largest magnitude of the int8 levels `integer_weight` gives at `bits`; None when the
        family has no exact int8 form at that width (a codebook, an offset, levels beyond int8)."""
        return None

    def integer_weight(self, quantized: QuantizedWeight) -> IntegerWeight:
        """The weight exactly as int8 levels times a per-channel scale (`levels * scale` equals
        `dequantize(quantized)` bit for bit).

        Raises:
            QuantizationError: The family has no int8 form at the weight's bits (`largest_integer_level` is None).
        """
        raise QuantizationError(f"quantizer {self.name!r}: {quantized.bits}-bit codes have no exact int8 form")

    def runs_on_integer_kernels(self, bits: int) -> bool:
        """Its `bits`-bit layers become integer kernels exactly: int8 levels within `INTEGER_KERNEL_LEVEL`."""
        largest = self.largest_integer_level(bits)
        return largest is not None and largest <= INTEGER_KERNEL_LEVEL

    def integer_kernel_variant(self, bits: int) -> str:
        """The registered quantizer a `bits`-bit layer trains with when it will run on integer kernels.

        Itself by default; a family whose grid has an int8 form beyond `INTEGER_KERNEL_LEVEL` names
        its variant on the kernels' range, so that the in-run model is the one the kernels compute.
        """
        return self.name


@dataclass(frozen=True)
class QatOptions:
    """Settings of the learned fake-quantizers.

    Attributes:
        reassign_every: Steps between k-means code re-assignments.
        soft_step: K-means layers train through TinyWASE's soft-step instead of hard centroids.
        temperature_start, temperature_end: Soft-step temperature range (relative to level spacing).
    """

    reassign_every: int = 1
    soft_step: bool = False
    temperature_start: float = 0.5
    temperature_end: float = 0.01

    def __post_init__(self) -> None:
        if self.reassign_every < 1:
            raise QuantizationError(f"reassign_every={self.reassign_every}: must be >= 1")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise QuantizationError(
                f"soft-step temperatures start={self.temperature_start}, end={self.temperature_end}: "
                "need 0 < end <= start"
            )


class FakeQuantizer(nn.Module, ABC):
    """Latent float weight -> differentiable quantized weight of one layer, for quantization-aware training.

    During QAT a layer keeps a latent float weight; a fake-quantizer, registered as a
    `torch.nn.utils.parametrize` parametrization of that weight, turns it into the quantized
    weight the layer computes with, differentiably. Its own parameters (steps, centroids, binary
    levels) are trained with the network. `export` gives the codes and side tensors in exactly the
    format the registered quantizer dequantizes, so the trained layer packs bit-exactly.

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


def check_bits(quantizer: str, bits: int, allowed: tuple[int, ...]) -> None:
    """Raise a `QuantizationError` naming the quantizer and the bit width when `bits` is not allowed."""
    if bits not in allowed:
        raise QuantizationError(f"quantizer {quantizer!r}: bits={bits} not supported; allowed: {list(allowed)}")
