"""What an integer kernel needs of a quantized layer: its weight as exact int8 levels in a safe range.

onnxruntime runs a convolution or linear layer on an integer kernel (QLinearConv, QGemm) when
its weight is int8 levels times one scale per output channel and its activations are 8-bit. A
family whose levels are integer multiples of a per-channel step can be written that way exactly
(`Quantizer.integer_weight`): uniform symmetric grids (`level * scale`), power-of-two grids of few
levels (`±2**(k_max - k)` times `scale * 2**-k_max`), static binarization (`±1 * alpha`). A
codebook (k-means), a per-channel offset (adaptive binarization) or a zero point that may lie far
outside the codes (uniform asymmetric grids) has no such form; those layers keep the weight-only
decode in an exported graph.

The range matters as much as the form. x86 CPUs without VNNI multiply uint8 activations by int8
weights with `vpmaddubsw`, which sums two products into a signed 16-bit lane and saturates:
`2 * 255 * 127` overflows it, `2 * 255 * 64 = 32640` does not (onnxruntime's `reduce_range`).
A layer's levels must therefore stay within `INTEGER_KERNEL_LEVEL` for the exported model to
compute what the in-run model computed on every x86 CPU, so a layer that will run on integer
kernels is trained on that range (`Quantizer.integer_kernel_variant`, applied by the plan of a
candidate with `INTEGER_ACTIVATION_BITS` activations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INTEGER_KERNEL_LEVEL = 64
"""Largest weight level whose products with uint8 activations sum pairwise within int16 (`2 * 255 * 64 <= 32767`)."""

INT8_LARGEST_LEVEL = 127
"""Largest magnitude of a symmetric int8 level (-128 has no positive counterpart)."""

INTEGER_ACTIVATION_BITS = 8
"""Activation bits the integer kernels take; narrower grids need a float clip the kernels cannot fuse."""


@dataclass(frozen=True)
class IntegerWeight:
    """A weight written exactly as integer levels times a per-output-channel (or per-tensor) scale.

    Attributes:
        levels: Signed levels, int8, the weight's shape.
        scale: float32 scale per output channel (`[channels]`), or `[1]` for the whole tensor.
    """

    levels: torch.Tensor
    scale: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        """`levels * scale` per output channel, in float32 (what an integer kernel's result stands for)."""
        rows = self.levels.reshape(self.scale.shape[0], -1).to(torch.float32)
        return (rows * self.scale[:, None]).reshape(self.levels.shape)

