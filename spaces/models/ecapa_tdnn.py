"""ECAPA-TDNN speaker-embedding family (Desplanques et al. 2020, WeSpeaker layout).

A TDNN layer, three SE-Res2Blocks with growing dilation (`blocks`, a student's depth knob),
multi-layer feature aggregation (MFA) of the block outputs, attentive statistics pooling with
global context, and a linear embedding. `channels` is the width knob: 512 and 1024 are
WeSpeaker's ECAPA_TDNN_GLOB_c512 and _c1024 at 80 mel bins.
As in WeSpeaker, the MFA output width (`mfa_channels`, 1536) does not follow `channels`, so a
narrow student sets it explicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.models.layers import Add, ChannelsFirst, GlobalContext, Multiply, TdnnBlock, WeightedStatisticsPooling, group_by_top_module


class _Res2Conv(nn.Module):
    """Res2Net convolution: `scale` channel splits, each later split also sees the previous result.

    The first `scale - 1` splits pass through a dilated TDNN layer; the last one is kept as is,
    so one block covers several receptive fields at the cost of `scale - 1` narrow convolutions.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            TdnnBlock(self.width, self.width, kernel_size, dilation) for _ in range(scale - 1)
        )
        self.adds = nn.ModuleList(Add() for _ in range(scale - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(x, self.width, dim=1)
        outputs = [self.convs[0](splits[0])]
        for index, conv in enumerate(self.convs[1:], start=1):
            outputs.append(conv(self.adds[index - 1](outputs[-1], splits[index])))
        outputs.append(splits[-1])
        return torch.cat(outputs, dim=1)


class _SqueezeExcitation(nn.Module):
    """Rescale channels by gates computed from the utterance mean (1x1 convolutions on `[B, C, 1]`)."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool1d(1)
        self.down = nn.Conv1d(channels, bottleneck, 1)
        self.relu = nn.ReLU()
        self.up = nn.Conv1d(bottleneck, channels, 1)
        self.sigmoid = nn.Sigmoid()
        self.scale = Multiply()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.sigmoid(self.up(self.relu(self.down(self.squeeze(x)))))
        return self.scale(x, gates)


class SERes2Block(nn.Module):
    """1x1 TDNN, Res2Net dilated convolution, 1x1 TDNN, squeeze-excitation, residual connection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_channels: int) -> None:
        super().__init__()
        self.conv_in = TdnnBlock(channels, channels)
        self.res2 = _Res2Conv(channels, kernel_size, dilation, scale)
        self.conv_out = TdnnBlock(channels, channels)
        self.se = _SqueezeExcitation(channels, se_channels)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(x, self.se(self.conv_out(self.res2(self.conv_in(x)))))


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation: `[B, C, T]` -> `[B, 2C]`.

    Per-channel frame weights come from a small 1x1-conv network; with `global_context` it also
    sees the utterance's mean and standard deviation, so a frame is weighted relative to them.
    """

    def __init__(self, channels: int, attention_channels: int, global_context: bool) -> None:
        super().__init__()
        self.context = GlobalContext() if global_context else nn.Identity()
        context_channels = 3 * channels if global_context else channels
        self.attention_hidden = nn.Conv1d(context_channels, attention_channels, 1)
        self.tanh = nn.Tanh()
        self.attention_scores = nn.Conv1d(attention_channels, channels, 1)
        self.softmax = nn.Softmax(dim=-1)
        self.statistics = WeightedStatisticsPooling()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.attention_scores(self.tanh(self.attention_hidden(self.context(x))))
        return self.statistics(x, self.softmax(scores))


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN speaker encoder: features `[batch, frames, bins]` -> embeddings `[batch, dim]`.

    Args:
        num_mel_bins: Filterbank channels of the input.
        channels: Width of the TDNN layer and the three SE-Res2Blocks.
        embedding_dim: Size of the speaker embedding.
        scale: Res2Net splits per block; must divide `channels`.
        se_channels: Bottleneck width of the squeeze-excitation gates.
        attention_channels: Hidden width of the attentive pooling.
        global_context: Whether the attention also sees utterance-level mean and std.
        mfa_channels: Output width of the multi-layer feature aggregation convolution.
        blocks: Number of SE-Res2Blocks (dilations 2, 3, 4, ...; three in the published model).
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        channels: int = 512,
        embedding_dim: int = 192,
        scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        global_context: bool = True,
        mfa_channels: int = 1536,
        blocks: int = 3,
    ) -> None:
        super().__init__()
        sizes = dict(
            num_mel_bins=num_mel_bins,
            channels=channels,
            embedding_dim=embedding_dim,
            se_channels=se_channels,
            attention_channels=attention_channels,
            mfa_channels=mfa_channels,
            blocks=blocks,
        )
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        if scale < 2 or channels % scale:
            raise ValueError(f"model.scale={scale}: must be >= 2 and divide model.channels={channels}")
        self.channels_first = ChannelsFirst()
        self.tdnn = TdnnBlock(num_mel_bins, channels, kernel_size=5)
        self.num_blocks = blocks
        for index in range(1, blocks + 1):
            self.add_module(f"block{index}", SERes2Block(channels, 3, index + 1, scale, se_channels))
        self.mfa = nn.Conv1d(blocks * channels, mfa_channels, 1)
        self.mfa_relu = nn.ReLU()
        self.pooling = AttentiveStatisticsPooling(mfa_channels, attention_channels, global_context)
        self.pooling_norm = nn.BatchNorm1d(2 * mfa_channels)
        self.embedding = nn.Linear(2 * mfa_channels, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "tdnn", "block1".."blockN" `[B, channels, T]`,
            "mfa" `[B, mfa_channels, T]`, "pooled" (attentive statistics) `[B, 2 * mfa_channels]`
            and "embedding".
        """
        taps = {"tdnn": self.tdnn(self.channels_first(features))}
        blocks = [f"block{index}" for index in range(1, self.num_blocks + 1)]
        x = taps["tdnn"]
        for name in blocks:
            x = taps[name] = self.get_submodule(name)(x)
        aggregated = torch.cat([taps[name] for name in blocks], dim=1)
        taps["mfa"] = self.mfa_relu(self.mfa(aggregated))
        taps["pooled"] = self.pooling(taps["mfa"])
        taps["embedding"] = self.embedding_norm(self.embedding(self.pooling_norm(taps["pooled"])))
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers grouped by block (tdnn, block1..blockN, mfa, pooling, embedding)."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The SE-Res2Blocks, in order: they may share weights (`spaces.sharing`)."""
        return [[f"block{index}" for index in range(1, self.num_blocks + 1)]]
