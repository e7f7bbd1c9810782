"""How an exported graph turns a quantizer's codes and side tensors back into float weights.

Each quantizer family declares one of these descriptions as its `Quantizer.decoding`;
`search.onnx_export` builds the graph nodes for each kind. They are plain data, so that `spaces`
(imported by every Ray worker) never imports onnx, and a new family that decodes like an existing
one needs no change to the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decoding:
    """A kind of decoding; the exporter knows each subclass by its type."""


@dataclass(frozen=True)
class DequantizeLinear(Decoding):
    """`(code - zero_point) * scale` per output channel, or per tensor when `scale` has one entry.

    Side tensors: `scale`, and `zero_point` when the grid is asymmetric; without one, the zero
    point is the symmetric grid's centre `2**(bits-1) - 1`.
    """


@dataclass(frozen=True)
class ScaledTable(Decoding):
    """A fixed table of levels indexed by code, times a per-channel scale, plus a per-channel offset.

    The table is the family's own `dequantize` of every code at unit scale and zero offset, so
    the levels may be anything that scales linearly per channel (powers of two, signs, ternary).

    Attributes:
        multiplier: Name of the per-channel scale side tensor.
        offset: Name of the per-channel offset side tensor, or None when there is none.
    """

    multiplier: str
    offset: str | None = None


@dataclass(frozen=True)
class CodebookLookup(Decoding):
    """`codebook[group of channel][code]`.

    Side tensor `codebook`: `2**bits` levels, or `[groups, 2**bits]` with one codebook per group of
    output channels, channel `c` of `C` being in group `c * groups // C` (contiguous, near-equal runs).
    """
