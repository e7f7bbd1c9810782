"""Small layers that model families share.

The parameter-free ones are modules (not functional calls) so that `spaces.describe` sees them
and the cost model prices the residual additions, gates and pooling like any other layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class ChannelsFirst(nn.Module):
    """Filterbank features `[batch, frames, bins]` -> `[batch, bins, frames]`, the layout convolutions read.

    A module of its own, not a bare transpose in `forward`, so a model description lists it:
    a runtime runs it as a kernel that walks the whole input, and what it costs depends on the
    layout the next kernel runs in (`hwcost.runtimes`).
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.transpose(1, 2)


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


class FramedEncoder(nn.Conv1d):
    """A strided Conv1d from one channel (a learned analysis filterbank), computed in training as
    unfolded frames times the filter matrix.

    Same result as the convolution; the reason is speed: PyTorch's CPU convolution takes its
    im2col path for one input channel and long kernels, much slower forward and backward than
    one matmul. Inference (and export) runs the plain convolution.
    """

    def __init__(self, filters: int, window: int, stride: int) -> None:
        super().__init__(1, filters, window, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        frames = x.squeeze(1).unfold(-1, self.kernel_size[0], self.stride[0])
        return torch.matmul(frames, self.weight.squeeze(1).t()).transpose(1, 2)


class OverlapAddDecoder(nn.ConvTranspose1d):
    """A strided ConvTranspose1d to one channel (a learned synthesis filterbank), computed in
    training as a matmul to frames and an overlap-add (`F.fold`); faster for the reason
    `FramedEncoder` gives, with the same result."""

    def __init__(self, filters: int, window: int, stride: int) -> None:
        super().__init__(filters, 1, window, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        window, stride = self.kernel_size[0], self.stride[0]
        frames = torch.matmul(x.transpose(1, 2), self.weight.squeeze(1))
        length = (x.shape[-1] - 1) * stride + window
        overlapped = F.fold(frames.transpose(1, 2), (1, length), kernel_size=(1, window), stride=(1, stride))
        return overlapped.view(x.shape[0], 1, length)


class DepthwiseConv1d(nn.Conv1d):
    """A dilated depthwise Conv1d with "same" padding, computed in training as a sum of shifted,
    per-channel scaled copies of the input.

    Same result as the convolution; PyTorch's CPU kernel for dilated grouped convolutions is
    slower, forward and backward, than these few elementwise products (for dilation 1 the
    kernel is the faster one and is kept).
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dilation[0] == 1:
            return super().forward(x)
        padded = F.pad(x, (self.padding[0], self.padding[0]))
        dilation, length, weight = self.dilation[0], x.shape[-1], self.weight
        out = self.bias.unsqueeze(-1)
        for tap in range(self.kernel_size[0]):
            out = out + padded[..., tap * dilation : tap * dilation + length] * weight[:, :, tap]
        return out


class PReLU(nn.PReLU):
    """nn.PReLU computed in training as relu(x) - a * relu(-x): the same function, whose backward
    is about twice as fast on CPU as the fused kernel's (which reduces the slope's gradient
    serially)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        weight = self.weight.view(1, -1, *([1] * (x.dim() - 2)))  # one slope, or one per channel (dim 1)
        return F.relu(x) - weight * F.relu(-x)
