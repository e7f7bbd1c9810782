"""Small layers that model families share.

The parameter-free ones are modules (not functional calls) so that `spaces.describe` sees them
and the cost model prices the residual additions, gates and pooling like any other layer.
"""

from __future__ import annotations

import torch
from torch import nn


class TdnnBlock(nn.Module):
    """Time-delay layer: a dilated Conv1d with "same" padding, ReLU, then batch norm.

    "Same" padding keeps every frame-level output as long as the input, so teacher and student
    frame-level outputs line up for distillation whatever their kernel sizes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation)
        self.relu = nn.ReLU()
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.relu(self.conv(x)))


class Add(nn.Module):
    """Elementwise sum of two tensors (a residual connection)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over time: `[batch, channels, frames]` -> `[batch, 2 * channels]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1)
        std = torch.sqrt(x.var(dim=-1, unbiased=False).clamp(min=1e-5))
        return torch.cat([mean, std], dim=-1)


class Multiply(nn.Module):
    """Elementwise product of two broadcastable tensors (a squeeze-excitation or attention gate)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y


class GlobalContext(nn.Module):
    """Append the utterance mean and standard deviation to every frame: `[B, C, T]` -> `[B, 3C, T]`.

    Attention that sees the whole utterance's statistics can weight frames relative to it
    (ECAPA-TDNN's context-dependent attentive pooling).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False).clamp(min=1e-5))
        return torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)


class WeightedStatisticsPooling(nn.Module):
    """Mean and standard deviation over time under per-frame weights that sum to one.

    `x` and `weights` are `[batch, channels, frames]`; the result is `[batch, 2 * channels]`.
    """

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        mean = (weights * x).sum(dim=-1)
        variance = (weights * x.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, torch.sqrt(variance.clamp(min=1e-5))], dim=-1)


QUANTIZABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.ConvTranspose1d)
"""Module types whose weights a candidate may quantize (the extractor's decoder is a transposed conv)."""


def group_by_top_module(model: nn.Module) -> dict[str, list[str]]:
    """Quantizable layer names grouped by the model's top-level child they sit in, in forward order.

    Families name their top-level children after stages or blocks, so this is the "stage"
    granularity of the search space.
    """
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZABLE_TYPES):
            groups.setdefault(name.split(".")[0], []).append(name)
    return groups

