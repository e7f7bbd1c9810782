"""WeSpeaker's ECAPA-TDNN speaker encoder, tensor for tensor, so its published checkpoints load strictly.

Upstream: `wespeaker/models/ecapa_tdnn.py` and `pooling_layers.py` (ASTP) of wenet-e2e/wespeaker
at commit `WESPEAKER_COMMIT`: ECAPA_TDNN_c512 / _c1024 (`channels`) and their GLOB variants
(`global_context=True`, upstream `global_context_att`). Parameter names are upstream's: `layer1.{conv,bn}`,
`layer2..4.se_res2block.{0: conv/bn, 1: convs.i/bns.i, 2: conv/bn, 3: linear1/linear2}`, `conv`,
`pool.linear1`, `pool.linear2`, `bn`, `linear` and `bn2` (with `emb_bn`).

Upstream fixes the Res2Net scale (8), the squeeze-excitation and attention bottlenecks (128) and
the aggregation width (1536); they are arguments here with those defaults, so a narrow student
or a small test model can be built from the same code. The embedding is upstream's second
output (`linear`, then `bn2` with `emb_bn`), the one WeSpeaker's extraction takes.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.models.layers import Add, ChannelsFirst, GlobalContext, Multiply, WeightedStatisticsPooling, group_by_top_module

ASTP_VARIANCE_FLOOR = 1e-7
"""WeSpeaker's ASTP: added to the context variance, and the floor of the pooled variance."""


class ConvReluBn(nn.Module):
    """Conv1d, ReLU, then batch norm (upstream's Conv1dReluBn: `conv`, `bn`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.relu(self.conv(x)))


class Res2ConvReluBn(nn.Module):
    """Res2Net convolution (upstream's Res2Conv1dReluBn: `convs.i`, `bns.i`).

    The first `scale - 1` channel splits each pass a dilated conv, ReLU and batch norm, each
    after adding the previous split's output; the last split passes through unchanged.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel_size, padding=dilation, dilation=dilation)
            for _ in range(scale - 1)
        )
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))
        self.adds = nn.ModuleList(Add() for _ in range(scale - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(x, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        for index, (conv, relu, bn) in enumerate(zip(self.convs, self.relus, self.bns)):
            split = splits[index] if index == 0 else self.adds[index - 1](outputs[-1], splits[index])
            outputs.append(bn(relu(conv(split))))
        outputs.append(splits[len(self.convs)])
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the utterance mean through two linear layers (upstream's SE_Connect)."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool1d(1)
        self.linear1 = nn.Linear(channels, bottleneck)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(bottleneck, channels)
        self.sigmoid = nn.Sigmoid()
        self.scale = Multiply()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.sigmoid(self.linear2(self.relu(self.linear1(self.squeeze(x).squeeze(-1)))))
        return self.scale(x, gates.unsqueeze(-1))


class SERes2Block(nn.Module):
    """1x1 conv, Res2Net conv, 1x1 conv, squeeze-excitation (upstream's `se_res2block.0..3`), plus input."""

    def __init__(self, channels: int, dilation: int, scale: int, se_channels: int) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            ConvReluBn(channels, channels),
            Res2ConvReluBn(channels, 3, dilation, scale),
            ConvReluBn(channels, channels),
            SqueezeExcitation(channels, se_channels),
        )
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(x, self.se_res2block(x))


class UnbiasedGlobalContext(GlobalContext):
    """Frames with the utterance mean and sqrt(unbiased variance + 1e-7) appended (ASTP's context)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = torch.sqrt(torch.var(x, dim=-1, keepdim=True) + ASTP_VARIANCE_FLOOR)
        return torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)


class AstpStatistics(WeightedStatisticsPooling):
    """Weighted mean and std with ASTP's variance floor (1e-7 instead of the parent's 1e-5)."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        mean = (weights * x).sum(dim=-1)
        variance = (weights * x.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, torch.sqrt(variance.clamp(min=ASTP_VARIANCE_FLOOR))], dim=-1)


class AttentiveStatisticsPooling(nn.Module):
    """WeSpeaker's ASTP: per-channel softmax attention over frames, then weighted mean and std."""

    def __init__(self, channels: int, bottleneck: int, global_context: bool) -> None:
        super().__init__()
        self.context = UnbiasedGlobalContext() if global_context else nn.Identity()
        self.linear1 = nn.Conv1d(3 * channels if global_context else channels, bottleneck, 1)
        self.tanh = nn.Tanh()
        self.linear2 = nn.Conv1d(bottleneck, channels, 1)
        self.softmax = nn.Softmax(dim=2)
        self.statistics = AstpStatistics()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.softmax(self.linear2(self.tanh(self.linear1(self.context(x)))))
        return self.statistics(x, weights)


class WespeakerEcapaTdnn(nn.Module):
    """WeSpeaker ECAPA-TDNN: fbank `[batch, frames, num_mel_bins]` -> embeddings `[batch, embedding_dim]`.

    Args (upstream's `ECAPA_TDNN(...)` arguments under the engine's common names):
        channels: 512 (ECAPA_TDNN_c512) or 1024 (_c1024), the width of layer1..layer4.
        num_mel_bins: Mel bins of the input (upstream `feat_dim`).
        embedding_dim: Size of the embedding (upstream `embed_dim`).
        global_context: The GLOB variants (upstream `global_context_att`): attention also sees
            the utterance mean and std.
        emb_bn: Batch norm `bn2` after the embedding layer.
        scale: Res2Net splits per block (upstream: 8); must divide `channels`.
        se_channels: Squeeze-excitation bottleneck (upstream: 128).
        attention_channels: ASTP bottleneck (upstream: 128).
        mfa_channels: Output of the aggregation conv `conv` (upstream: 512 * 3, whatever `channels`).
    """

    def __init__(
        self,
        channels: int = 512,
        num_mel_bins: int = 80,
        embedding_dim: int = 192,
        global_context: bool = False,
        emb_bn: bool = False,
        scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        mfa_channels: int = 1536,
    ) -> None:
        super().__init__()
        sizes = dict(channels=channels, num_mel_bins=num_mel_bins, embedding_dim=embedding_dim, se_channels=se_channels,
                     attention_channels=attention_channels, mfa_channels=mfa_channels)
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        if scale < 2 or channels % scale:
            raise ValueError(f"model.scale={scale}: must be >= 2 and divide model.channels={channels}")
        self.channels_first = ChannelsFirst()
        self.layer1 = ConvReluBn(num_mel_bins, channels, kernel_size=5, padding=2)
        self.layer2 = SERes2Block(channels, 2, scale, se_channels)
        self.layer3 = SERes2Block(channels, 3, scale, se_channels)
        self.layer4 = SERes2Block(channels, 4, scale, se_channels)
        self.conv = nn.Conv1d(3 * channels, mfa_channels, 1)
        self.relu = nn.ReLU()
        self.pool = AttentiveStatisticsPooling(mfa_channels, attention_channels, global_context)
        self.bn = nn.BatchNorm1d(2 * mfa_channels)
        self.linear = nn.Linear(2 * mfa_channels, embedding_dim)
        if emb_bn:
            self.bn2 = nn.BatchNorm1d(embedding_dim)
        self.emb_bn = emb_bn
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "layer1".."layer4" `[B, channels, T]`, "conv"
            (the aggregation, after its ReLU) `[B, mfa_channels, T]`, "pooled" `[B, 2 * mfa_channels]`
            and "embedding".
        """
        taps = {"layer1": self.layer1(self.channels_first(features))}
        for previous, name in (("layer1", "layer2"), ("layer2", "layer3"), ("layer3", "layer4")):
            taps[name] = self.get_submodule(name)(taps[previous])
        taps["conv"] = self.relu(self.conv(torch.cat([taps["layer2"], taps["layer3"], taps["layer4"]], dim=1)))
        taps["pooled"] = self.pool(taps["conv"])
        embedding = self.linear(self.bn(taps["pooled"]))
        taps["embedding"] = self.bn2(embedding) if self.emb_bn else embedding
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers by upstream's top-level module: layer1..layer4, conv, pool, linear."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The three SE-Res2Blocks: they may share weights (`spaces.sharing`)."""
        return [["layer2", "layer3", "layer4"]]
