"""SpeechBrain's ECAPA-TDNN speaker encoder, tensor for tensor, so `embedding_model.ckpt` loads strictly.

Upstream: `speechbrain/lobes/models/ECAPA_TDNN.py` (`ECAPA_TDNN`) of speechbrain 1.1.2, checked
value for value against it in tests/pretrained. Parameter names are upstream's, nested through
its wrapper modules: `blocks.0.conv.conv.weight`, `blocks.0.norm.norm.running_mean`,
`blocks.1.res2net_block.blocks.0.conv.conv.weight`, `blocks.1.se_block.conv1.conv.weight`,
`mfa.conv.conv.weight`, `asp.tdnn.conv.conv.weight`, `asp.conv.conv.weight`, `asp_bn.norm.norm.*`,
`fc.conv.weight`.

Upstream details kept: SpeechBrain's "same" padding reflects the input (not zeros); the Res2Net
block passes its *first* split through (WeSpeaker's passes the last); statistics are centred
(`sum(w * (x - mean)**2)`) and clamped at 1e-12; optional relative `lengths` mask padded frames
out of the squeeze-excitation means, the context statistics and the attention. Upstream returns
`[B, 1, lin_neurons]`; this model returns the same values as `[B, embedding_dim]`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces.models.layers import Add, ChannelsFirst, GlobalContext, Multiply, WeightedStatisticsPooling, group_by_top_module

STATISTICS_EPSILON = 1e-12
"""Floor of the variances in SpeechBrain's AttentiveStatisticsPooling (`self.eps`)."""


def length_mask(lengths: torch.Tensor | None, frames: int, like: torch.Tensor) -> torch.Tensor:
    """`[B, 1, frames]` float mask of the valid frames: frame t < length * frames (all ones without lengths).

    `lengths` are relative (1.0 = the whole padded batch), as SpeechBrain's `length_to_mask` takes them.
    """
    if lengths is None:
        return torch.ones(like.shape[0], 1, frames, dtype=like.dtype, device=like.device)
    positions = torch.arange(frames, device=like.device, dtype=lengths.dtype)
    return (positions < lengths.unsqueeze(1) * frames).to(like.dtype).unsqueeze(1)


def weighted_mean_std(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and centred std over time under `weights` that sum to one, `[B, C, T]` -> two `[B, C]`."""
    mean = (weights * x).sum(dim=2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(dim=2).clamp(STATISTICS_EPSILON))
    return mean, std


class SameConv1d(nn.Module):
    """SpeechBrain's Conv1d wrapper (`conv`): a stride-1 Conv1d keeping the length by reflect padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2,
            groups=groups, padding_mode="reflect",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class WrappedBatchNorm1d(nn.Module):
    """SpeechBrain's BatchNorm1d wrapper (`norm`) over `[B, C, T]`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TdnnBlock(nn.Module):
    """Conv1d, ReLU, batch norm (upstream's TDNNBlock; its dropout is 0 in the published models)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = SameConv1d(in_channels, out_channels, kernel_size, dilation, groups)
        self.activation = nn.ReLU()
        self.norm = WrappedBatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.conv(x)))


class Res2NetBlock(nn.Module):
    """`scale` channel splits: the first passes through, split i > 0 is a TDNN block of itself plus
    split i - 1's output (the second split's block sees only itself)."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        self.blocks = nn.ModuleList(
            TdnnBlock(channels // scale, channels // scale, kernel_size, dilation) for _ in range(scale - 1)
        )
        self.adds = nn.ModuleList(Add() for _ in range(scale - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.chunk(x, self.scale, dim=1)
        outputs = [splits[0], self.blocks[0](splits[1])]
        for index in range(2, self.scale):
            outputs.append(self.blocks[index - 1](self.adds[index - 2](splits[index], outputs[-1])))
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the (masked) utterance mean through two 1x1 convolutions (upstream's SEBlock)."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.conv1 = SameConv1d(channels, se_channels, 1)
        self.relu = nn.ReLU()
        self.conv2 = SameConv1d(se_channels, channels, 1)
        self.sigmoid = nn.Sigmoid()
        self.scale = Multiply()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            squeezed = x.mean(dim=2, keepdim=True)
        else:
            squeezed = (x * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True)
        return self.scale(self.sigmoid(self.conv2(self.relu(self.conv1(squeezed)))), x)


class SERes2NetBlock(nn.Module):
    """TDNN, Res2Net, TDNN, squeeze-excitation, plus the input (through a 1x1 conv when widths differ)."""

    def __init__(
        self, in_channels: int, out_channels: int, scale: int, se_channels: int, kernel_size: int, dilation: int,
        groups: int,
    ) -> None:
        super().__init__()
        self.tdnn1 = TdnnBlock(in_channels, out_channels, 1, 1, groups)
        self.res2net_block = Res2NetBlock(out_channels, scale, kernel_size, dilation)
        self.tdnn2 = TdnnBlock(out_channels, out_channels, 1, 1, groups)
        self.se_block = SqueezeExcitation(out_channels, se_channels)
        self.shortcut = SameConv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.add = Add()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))), mask)
        return self.add(out, self.shortcut(x))


class MaskedGlobalContext(GlobalContext):
    """Frames with the masked utterance mean and centred std appended, `[B, C, T]` -> `[B, 3C, T]`."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean, std = weighted_mean_std(x, mask / mask.sum(dim=2, keepdim=True))
        frames = x.shape[-1]
        return torch.cat([x, mean.unsqueeze(2).repeat(1, 1, frames), std.unsqueeze(2).repeat(1, 1, frames)], dim=1)


class CentredStatistics(WeightedStatisticsPooling):
    """Weighted mean and centred std (SpeechBrain's form of the weighted statistics), `[B, 2C]`."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.cat(weighted_mean_std(x, weights), dim=1)


class AttentiveStatisticsPooling(nn.Module):
    """Per-channel softmax attention over the valid frames, then weighted mean and std."""

    def __init__(self, channels: int, attention_channels: int, global_context: bool) -> None:
        super().__init__()
        self.global_context = global_context
        if global_context:
            self.context = MaskedGlobalContext()
        self.tdnn = TdnnBlock(3 * channels if global_context else channels, attention_channels, 1, 1)
        self.tanh = nn.Tanh()
        self.conv = SameConv1d(attention_channels, channels, 1)
        self.softmax = nn.Softmax(dim=2)
        self.statistics = CentredStatistics()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attention_input = self.context(x, mask) if self.global_context else x
        scores = self.conv(self.tanh(self.tdnn(attention_input))).masked_fill(mask == 0, float("-inf"))
        return self.statistics(x, self.softmax(scores))


class SpeechbrainEcapaTdnn(nn.Module):
    """SpeechBrain ECAPA-TDNN: fbank `[batch, frames, num_mel_bins]` (+ relative lengths) -> `[batch, embedding_dim]`.

    Args (upstream's `ECAPA_TDNN(...)` arguments under the engine's common names; the published
    spkrec-ecapa-voxceleb model is input_size 80 and the defaults otherwise):
        num_mel_bins: Mel bins of the input (upstream `input_size`).
        embedding_dim: Size of the embedding (upstream `lin_neurons`).
        channels: Widths of the first TDNN, each SE-Res2Net block, and the aggregation (last).
        kernel_sizes: Kernel size of each of those layers.
        dilations: Dilation of each of those layers.
        attention_channels: Hidden width of the attentive pooling.
        res2net_scale: Res2Net splits per block.
        se_channels: Squeeze-excitation bottleneck.
        global_context: The attention also sees the utterance mean and std.
        groups: Convolution groups of each layer (the Res2Net convolutions are ungrouped).
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        embedding_dim: int = 192,
        channels: Sequence[int] = (512, 512, 512, 512, 1536),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        global_context: bool = True,
        groups: Sequence[int] = (1, 1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(dilations) == len(groups) or len(channels) < 3:
            raise ValueError(
                f"model.channels={list(channels)}, kernel_sizes={list(kernel_sizes)}, dilations={list(dilations)}, "
                f"groups={list(groups)}: need one entry per layer, at least three layers"
            )
        if min(channels) < 1 or num_mel_bins < 1 or embedding_dim < 1:
            raise ValueError(
                f"model.channels={list(channels)}, num_mel_bins={num_mel_bins}, embedding_dim={embedding_dim}: "
                "must be >= 1"
            )
        if res2net_scale < 2 or any(width % res2net_scale for width in channels[1:-1]):
            raise ValueError(f"model.res2net_scale={res2net_scale}: must be >= 2 and divide every block's channels")
        self.channels_first = ChannelsFirst()
        self.blocks = nn.ModuleList([TdnnBlock(num_mel_bins, channels[0], kernel_sizes[0], dilations[0], groups[0])])
        for index in range(1, len(channels) - 1):
            self.blocks.append(
                SERes2NetBlock(channels[index - 1], channels[index], res2net_scale, se_channels, kernel_sizes[index],
                               dilations[index], groups[index])
            )
        aggregated = channels[-2] * (len(channels) - 2)
        self.mfa = TdnnBlock(aggregated, channels[-1], kernel_sizes[-1], dilations[-1], groups[-1])
        self.asp = AttentiveStatisticsPooling(channels[-1], attention_channels, global_context)
        self.asp_bn = WrappedBatchNorm1d(2 * channels[-1])
        self.fc = SameConv1d(2 * channels[-1], embedding_dim, 1)
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_taps(features, lengths)[0]

    def forward_with_taps(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Args:
            features: `[B, T, num_mel_bins]`.
            lengths: `[B]` relative lengths of the valid frames (1.0 = all T); None = all valid.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "tdnn", "block1".."blockN" `[B, C, T]`, "mfa"
            `[B, channels[-1], T]`, "pooled" `[B, 2 * channels[-1]]` and "embedding".
        """
        x = self.channels_first(features)
        pooling_mask = length_mask(lengths, x.shape[-1], x)
        frame_mask = None if lengths is None else pooling_mask  # upstream's plain means without lengths
        taps = {"tdnn": self.blocks[0](x)}
        block_outputs = []
        x = taps["tdnn"]
        for index, block in enumerate(self.blocks[1:], start=1):
            x = taps[f"block{index}"] = block(x, frame_mask)
            block_outputs.append(x)
        taps["mfa"] = self.mfa(torch.cat(block_outputs, dim=1))
        taps["pooled"] = self.asp(taps["mfa"], pooling_mask)
        taps["embedding"] = self.fc(self.asp_bn(taps["pooled"].unsqueeze(2))).squeeze(2)
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers by upstream's top-level module: blocks, mfa, asp, fc (`blocks.<i>` per block)."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The SE-Res2Net blocks: those of equal shapes may share weights (`spaces.sharing`)."""
        return [[f"blocks.{index}" for index in range(1, len(self.blocks))]]
