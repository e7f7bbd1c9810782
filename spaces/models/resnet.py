"""ResNet speaker-embedding family (r-vector style) over log-mel filterbanks.

A 2-D ResNet of basic blocks reads the filterbank as an image, temporal statistics pooling turns
the last feature map into a fixed vector, and a linear layer gives the embedding. `blocks` and
`base_width` are the depth and width knobs: `(3, 4, 6, 3)` with width 32 is WeSpeaker's ResNet34.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces.models.layers import Add, ChannelsFirst, StatisticsPooling, group_by_top_module


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, self.shortcut(x)))


class ResNet(nn.Module):
    """ResNet speaker encoder: features `[batch, frames, bins]` -> embeddings `[batch, dim]`.

    Args:
        num_mel_bins: Filterbank channels of the input.
        base_width: Channels of the first stage; stage k has `base_width * 2**k`.
        blocks: Basic blocks per stage (four stages, strides 1, 2, 2, 2).
        embedding_dim: Size of the speaker embedding.
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        base_width: int = 32,
        blocks: Sequence[int] = (3, 4, 6, 3),
        embedding_dim: int = 256,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"model.blocks={list(blocks)}: need four stages of at least one block")
        if base_width < 1 or embedding_dim < 1:
            raise ValueError(f"model.base_width={base_width}, embedding_dim={embedding_dim}: must be >= 1")
        self.channels_first = ChannelsFirst()
        self.stem = nn.Sequential(
            nn.Conv2d(1, base_width, 3, padding=1, bias=False), nn.BatchNorm2d(base_width), nn.ReLU()
        )
        stages = []
        in_channels = base_width
        for index, num_blocks in enumerate(blocks):
            out_channels = base_width * 2**index
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_channels, out_channels, stride)]
            stage += [BasicBlock(out_channels, out_channels, 1) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        pooled_bins = num_mel_bins
        for _ in range(3):
            pooled_bins = (pooled_bins + 1) // 2
        self.pooling = StatisticsPooling()
        self.embedding = nn.Linear(2 * in_channels * pooled_bins, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Frame-level taps are `[B, C, T]` like the other families' (a stage's channels times its
        frequency bins as C), so teacher and student taps line up along time the same way.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "stem", "layer1".."layer4" `[B, C * F, T]`,
            "pooled" (mean and std over time) `[B, 2 * C * F]` and "embedding".
        """
        x = self.stem(self.channels_first(features).unsqueeze(1))
        taps = {"stem": x.flatten(1, 2)}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            taps[name] = x.flatten(1, 2)
        taps["pooled"] = self.pooling(taps["layer4"])
        taps["embedding"] = self.embedding(taps["pooled"])
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers grouped by stage, the coarse granularity of the search space."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The basic blocks of each stage, in order: those of equal shapes may share weights."""
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        return [[f"layer{stage}.{block}" for block in range(len(blocks))] for stage, blocks in enumerate(stages, 1)]
