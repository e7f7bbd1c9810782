"""Uniform weight quantization: evenly spaced levels per output channel or per tensor (Li et al. 2022).

Three independent choices, each a constructor argument and part of the registered name:

- symmetric (default): levels are the integers `-q..q` with `q = 2**(bits-1) - 1` times a scale, so
  zero is exact and `2**bits - 1` levels are used; codes are stored shifted by `q`. Asymmetric
  (`-asym`): `code = round(w / scale) + zero_point` in `0..2**bits - 1`, all `2**bits` levels
  spanning `[min, max]`; the integer zero point is stored as float32 and lies outside the code range
  when zero is outside `[min, max]` (weights need no exact zero, so the range is not widened to it).
- per output channel (default) or per tensor (`-tensor`): one scale (and zero point) per row of
  `weight.reshape(out_channels, -1)`, or one for the whole tensor (side tensors of shape `[1]`).
- min-max range (default) or MSE clipping (`-mse`): both ends of the range are multiplied by the
  ratio in `[0.3, 1.0]` (100 candidates) that minimises the squared weight error of each row;
  outliers then stop stretching the grid that every other weight must use.

A symmetric grid may also be on the range of onnxruntime's integer kernels (`-reduced`): its
levels stop at `±INTEGER_KERNEL_LEVEL` (`±64`, onnxruntime's `reduce_range`) where `2**(bits-1) - 1`
is larger, i.e. at 8 bits; codes keep the centre `2**(bits-1) - 1`, so the packed format and
`dequantize` are the plain grid's. A candidate with 8-bit activations trains its 8-bit symmetric
layers on it (`integer_kernel_variant`, `spaces.quant.integer_kernels` says why).

`dequantize` reads only the codes, the bit width and the side tensors (`scale`, `zero_point`).
A symmetric grid is integer levels times a per-row scale, so `integer_weight` writes it as int8
levels at every width. An asymmetric grid has no such bound: its zero point may lie far outside
the codes (a row of positive weights), so its levels `code - zero_point` may exceed int8.
"""

from __future__ import annotations

import torch

from spaces.quant.base import FakeQuantizer, QatOptions, QuantizationError, QuantizedWeight, Quantizer, check_bits
from spaces.quant.decoding import DequantizeLinear
from spaces.quant.integer_kernels import INTEGER_KERNEL_LEVEL, IntegerWeight

_UNIFORM_BITS = (2, 3, 4, 5, 6, 7, 8)
_CLIPPINGS = ("minmax", "mse")
_CLIP_RATIOS = torch.linspace(1.0, 0.3, 100).tolist()
"""Largest first, so a tie keeps the wider (min-max) range."""


class UniformQuantizer(Quantizer):
    """Uniform quantizer; the default is per-output-channel symmetric min-max ("uniform").

    Args:
        symmetric: Zero-centred grid (True) or scale plus zero point over `[min, max]` (False).
        per_channel: One grid per output channel (True) or one for the whole tensor (False).
        clipping: "minmax" uses the full range; "mse" searches the clipping ratio minimising weight MSE.
        reduced_range: A symmetric grid's levels stop at `±INTEGER_KERNEL_LEVEL` (integer kernels' range).
    """

    allowed_bits = _UNIFORM_BITS
    decoding = DequantizeLinear()

    def __init__(
        self, symmetric: bool = True, per_channel: bool = True, clipping: str = "minmax", reduced_range: bool = False
    ) -> None:
        if clipping not in _CLIPPINGS:
            raise QuantizationError(f"uniform quantizer: clipping={clipping!r}; expected one of {list(_CLIPPINGS)}")
        if reduced_range and not symmetric:
            raise QuantizationError("uniform quantizer: reduced_range needs a symmetric grid")
        self.symmetric = symmetric
        self.per_channel = per_channel
        self.clipping = clipping
        self.reduced_range = reduced_range
        suffixes = ("" if symmetric else "-asym") + ("" if per_channel else "-tensor")
        self.name = "uniform" + suffixes + ("-mse" if clipping == "mse" else "") + ("-reduced" if reduced_range else "")

    def largest_level(self, bits: int) -> int:
        """The symmetric grid's top level at `bits`: `2**(bits-1) - 1`, at most `INTEGER_KERNEL_LEVEL` when reduced."""
        top = centre(bits)
        return min(top, INTEGER_KERNEL_LEVEL) if self.reduced_range else top

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        rows = weight.detach().reshape(weight.shape[0] if self.per_channel else 1, -1).float()
        if self.symmetric:
            high = rows.abs().amax(dim=1)
            low = -high
        else:
            low, high = rows.amin(dim=1), rows.amax(dim=1)
        if self.clipping == "mse":
            ratio = self._mse_clip_ratio(rows, low, high, bits)
            low, high = low * ratio, high * ratio
        codes, side = self._encode(rows, low, high, bits)
        return QuantizedWeight(self.name, bits, codes.to(torch.uint8).reshape(weight.shape), side)

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        scale = quantized.side["scale"]
        codes = quantized.codes.reshape(scale.shape[0], -1).float()
        return _decode(codes, quantized.side, quantized.bits).reshape(quantized.codes.shape)

    def fake_quantizer(self, bits: int, latent: torch.Tensor, options: QatOptions) -> FakeQuantizer:
        """Learned step sizes (LSQ), starting from this quantizer's grid for `latent`."""
        from spaces.quant.lsq import LearnedStepQuantizer  # lsq imports this module

        return LearnedStepQuantizer(self, bits, latent)

    def largest_integer_level(self, bits: int) -> int | None:
        """Symmetric: the top level (at most 127). Asymmetric: None (its levels have no bound)."""
        return self.largest_level(bits) if self.symmetric else None

    def integer_weight(self, quantized: QuantizedWeight) -> IntegerWeight:
        """`code - centre` as int8 levels, with the scale as it is."""
        if self.largest_integer_level(quantized.bits) is None:
            return super().integer_weight(quantized)
        levels = quantized.codes.to(torch.int16) - centre(quantized.bits)
        return IntegerWeight(levels.to(torch.int8), quantized.side["scale"])

    def integer_kernel_variant(self, bits: int) -> str:
        """The same grid on the integer kernels' range where its own reaches beyond it (8 bits)."""
        if not self.symmetric or self.largest_level(bits) <= INTEGER_KERNEL_LEVEL:
            return self.name
        return UniformQuantizer(self.symmetric, self.per_channel, self.clipping, reduced_range=True).name

    def _encode(
        self, rows: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Float-valued codes of `rows` on the grid spanning `[low, high]` per row, and the side tensors."""
        if self.symmetric:
            q_max = self.largest_level(bits)
            scale = high / q_max
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            levels = torch.div(rows, scale[:, None]).round_().clamp_(-q_max, q_max)
            return levels.add_(centre(bits)), {"scale": scale}
        top_code = 2**bits - 1
        span = high - low
        # A constant row keeps its value exactly: the grid then runs from 0 to it.
        span = torch.where(span > 0, span, torch.where(high != 0, high.abs(), torch.ones_like(high)))
        scale = span / top_code
        zero_point = torch.round(-low / scale)
        codes = torch.div(rows, scale[:, None]).round_().add_(zero_point[:, None]).clamp_(0, top_code)
        return codes, {"scale": scale, "zero_point": zero_point}

    def _mse_clip_ratio(self, rows: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int) -> torch.Tensor:
        """Per row, the candidate ratio whose clipped grid gives the least squared weight error."""
        best_error = torch.full_like(high, float("inf"))
        best_ratio = torch.ones_like(high)
        for ratio in _CLIP_RATIOS:
            codes, side = self._encode(rows, low * ratio, high * ratio, bits)
            error = _decode(codes, side, bits).sub_(rows).square_().sum(dim=1)
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
        return best_ratio


def centre(bits: int) -> int:
    """The code of level 0 on a symmetric grid of `bits` bits (its zero point): `2**(bits-1) - 1`."""
    return 2 ** (bits - 1) - 1


def _decode(codes: torch.Tensor, side: dict[str, torch.Tensor], bits: int) -> torch.Tensor:
    """Float weights of `[rows, n]` codes: `(code - zero_point) * scale`, zero point the centre when symmetric."""
    offset = side["zero_point"][:, None] if "zero_point" in side else centre(bits)
    return torch.sub(codes, offset).mul_(side["scale"][:, None])
