"""Small parameter-free layers that model families share.

They are modules (not functional calls) so that `spaces.describe` sees them and the cost model
prices the residual additions and pooling like any other layer.
"""

from __future__ import annotations

import torch
from torch import nn


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
