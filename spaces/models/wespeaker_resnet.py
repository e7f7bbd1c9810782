"""WeSpeaker's ResNet speaker encoder, tensor for tensor, so its published checkpoints load strictly.

Upstream: `wespeaker/models/resnet.py` and `pooling_layers.py` (TSTP) of wenet-e2e/wespeaker at
commit `WESPEAKER_COMMIT`. Parameter names and shapes are upstream's (`conv1`, `bn1`,
`layer1..4.<block>.{conv1,bn1,conv2,bn2[,conv3,bn3],shortcut}`, `seg_1`, `seg_bn_1`, `seg_2`);
the activations, residual additions and pooling are modules here (they hold no parameters) so
`spaces.describe` prices them.

The input is `[batch, frames, bins]` Kaldi fbank (`evaluators.frontends.wespeaker`). Upstream's
forward returns `(embed_a, embed_b)`; WeSpeaker's extraction (`bin/extract.py`, `cli/speaker.py`)
takes the last element as the speaker embedding, so this model returns `seg_2`'s output with two
embedding layers and `seg_1`'s with one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces.models.layers import Add, ChannelsFirst, StatisticsPooling, group_by_top_module
from spaces.models.resnet import BasicBlock

WESPEAKER_COMMIT = "dfa741957e5c11f477623b6e583d67d0af25ee88"
"""The wenet-e2e/wespeaker commit whose model files these families reproduce."""

TSTP_VARIANCE_FLOOR = 1e-7
"""Added to the (unbiased) variance before the square root in WeSpeaker's TSTP pooling."""

FREQUENCY_DOWNSAMPLING = 8
"""Stages 2-4 halve the frequency axis; upstream sizes the pooled vector from `feat_dim // 8` bins."""

BLOCK_TYPES = ("basic", "bottleneck")
"""Residual block kinds: basic (ResNet18/34) and bottleneck (ResNet50/101/152/221/293)."""


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convolutions expanding channels 4x, with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = self.expansion * channels
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.add = Add()
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.relu3(self.add(self.bn3(self.conv3(out)), self.shortcut(x)))


class TemporalStatisticsPooling(StatisticsPooling):
    """WeSpeaker's TSTP: mean and sqrt(unbiased variance + 1e-7) over time, `[B, C, T]` -> `[B, 2C]`.

    The same statistics as `StatisticsPooling` (so it is priced as pooling) with upstream's
    estimator: Bessel's correction and an additive floor instead of a clamp.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1)
        std = torch.sqrt(torch.var(x, dim=-1) + TSTP_VARIANCE_FLOOR)
        return torch.cat([mean, std], dim=-1)


class WespeakerResNet(nn.Module):
    """WeSpeaker ResNet: fbank `[batch, frames, num_mel_bins]` -> embeddings `[batch, embedding_dim]`.

    Args (upstream's `ResNet(...)` arguments, the two sizes under the engine's common names):
        num_mel_bins: Mel bins of the input (upstream `feat_dim`); a multiple of 8, as upstream
            sizes the pooled vector for.
        embedding_dim: Size of the embedding layer(s) (upstream `embed_dim`).
        num_blocks: Residual blocks per stage, e.g. (2, 2, 2, 2) ResNet18, (3, 4, 6, 3) ResNet34,
            (10, 20, 64, 3) ResNet293 with `block="bottleneck"`.
        m_channels: Channels of the first stage; stage k has `m_channels * 2**k` (times 4 after
            a bottleneck block).
        two_emb_layer: A second embedding layer `seg_2` after ReLU and a non-affine batch norm.
        block: "basic" or "bottleneck".
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        embedding_dim: int = 256,
        num_blocks: Sequence[int] = (3, 4, 6, 3),
        m_channels: int = 32,
        two_emb_layer: bool = False,
        block: str = "basic",
    ) -> None:
        super().__init__()
        if num_mel_bins < FREQUENCY_DOWNSAMPLING or num_mel_bins % FREQUENCY_DOWNSAMPLING:
            raise ValueError(
                f"model.num_mel_bins={num_mel_bins}: must be a positive multiple of {FREQUENCY_DOWNSAMPLING}"
            )
        if len(num_blocks) != 4 or min(num_blocks) < 1:
            raise ValueError(f"model.num_blocks={list(num_blocks)}: need four stages of at least one block")
        if m_channels < 1 or embedding_dim < 1:
            raise ValueError(f"model.m_channels={m_channels}, embedding_dim={embedding_dim}: must be >= 1")
        if block not in BLOCK_TYPES:
            raise ValueError(f"model.block={block!r}: expected one of {list(BLOCK_TYPES)}")
        block_type = BasicBlock if block == "basic" else Bottleneck
        expansion = 1 if block == "basic" else Bottleneck.expansion
        self.channels_first = ChannelsFirst()
        self.conv1 = nn.Conv2d(1, m_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.relu = nn.ReLU()
        in_channels = m_channels
        for index, count in enumerate(num_blocks):
            channels = m_channels * 2**index
            strides = [1 if index == 0 else 2] + [1] * (count - 1)
            blocks = []
            for stride in strides:
                blocks.append(block_type(in_channels, channels, stride))
                in_channels = channels * expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.pool = TemporalStatisticsPooling()
        self.seg_1 = nn.Linear(2 * in_channels * (num_mel_bins // FREQUENCY_DOWNSAMPLING), embedding_dim)
        self.two_emb_layer = two_emb_layer
        if two_emb_layer:
            self.seg_relu = nn.ReLU()
            self.seg_bn_1 = nn.BatchNorm1d(embedding_dim, affine=False)
            self.seg_2 = nn.Linear(embedding_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "conv1", "layer1".."layer4" `[B, C * F, T]`
            (a stage's channels times its frequency bins, in upstream's pooling order), "pooled"
            `[B, 2 * C * F]` and "embedding".
        """
        x = self.relu(self.bn1(self.conv1(self.channels_first(features).unsqueeze(1))))
        taps = {"conv1": x.flatten(1, 2)}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = self.get_submodule(name)(x)
            taps[name] = x.flatten(1, 2)
        taps["pooled"] = self.pool(taps["layer4"])
        embedding = self.seg_1(taps["pooled"])
        if self.two_emb_layer:
            embedding = self.seg_2(self.seg_bn_1(self.seg_relu(embedding)))
        taps["embedding"] = embedding
        return embedding, taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers by upstream's top-level module: conv1, layer1..layer4, seg_1 (, seg_2)."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The residual blocks of each stage, in order: those of equal shapes may share weights."""
        return [
            [f"layer{stage}.{index}" for index in range(len(self.get_submodule(f"layer{stage}")))]
            for stage in range(1, 5)
        ]
