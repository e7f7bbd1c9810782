"""x-vector TDNN speaker-embedding family (Snyder et al. 2018, WeSpeaker's XVEC).

Five frame-level TDNN layers (`frame_layers`, a student's depth knob), statistics pooling and two
segment-level linear layers. The embedding is the output of the second segment layer (WeSpeaker's
default with two embedding layers).
`channels` and `pooling_channels` are the width knobs that build a narrow distillation student.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.models.layers import ChannelsFirst, StatisticsPooling, TdnnBlock, group_by_top_module

_CONTEXT_LAYERS = ((5, 1), (3, 2), (3, 3))
"""(kernel size, dilation) of the first frame-level layers; the layers after them are 1x1."""


class XVector(nn.Module):
    """x-vector speaker encoder: features `[batch, frames, bins]` -> embeddings `[batch, dim]`.

    Args:
        num_mel_bins: Filterbank channels of the input.
        channels: Width of the frame-level layers before the last one.
        pooling_channels: Width of the last frame-level layer, the one that is pooled.
        embedding_dim: Size of both segment-level layers, hence of the embedding.
        frame_layers: Frame-level layers (>= 2): up to three context layers (kernels 5, 3, 3 with
            dilations 1, 2, 3), then 1x1 layers, the last one widening to `pooling_channels`.
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        channels: int = 512,
        pooling_channels: int = 1500,
        embedding_dim: int = 512,
        frame_layers: int = 5,
    ) -> None:
        super().__init__()
        self.channels_first = ChannelsFirst()
        sizes = dict(
            num_mel_bins=num_mel_bins, channels=channels, pooling_channels=pooling_channels, embedding_dim=embedding_dim
        )
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        if frame_layers < 2:
            raise ValueError(f"model.frame_layers={frame_layers}: must be >= 2")
        context = _CONTEXT_LAYERS[: frame_layers - 1]
        shapes = [*context, *[(1, 1)] * (frame_layers - len(context))]
        widths = [num_mel_bins] + [channels] * (frame_layers - 1) + [pooling_channels]
        self.num_frame_layers = frame_layers
        for index, (kernel_size, dilation) in enumerate(shapes):
            self.add_module(f"frame{index + 1}", TdnnBlock(widths[index], widths[index + 1], kernel_size, dilation))
        self.pooling = StatisticsPooling()
        self.segment1 = nn.Linear(2 * pooling_channels, embedding_dim)
        self.segment1_relu = nn.ReLU()
        self.segment1_norm = nn.BatchNorm1d(embedding_dim)
        self.embedding = nn.Linear(embedding_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "frame1".."frame4" `[B, channels, T]`,
            "frame5" `[B, pooling_channels, T]` (with N frame layers: "frame1".."frameN", the last
            one pooled), "pooled" `[B, 2 * pooling_channels]`, "segment1" (first segment layer
            before its ReLU) and "embedding", both `[B, embedding_dim]`.
        """
        taps = {}
        x = self.channels_first(features)
        for index in range(1, self.num_frame_layers + 1):
            x = taps[f"frame{index}"] = self.get_submodule(f"frame{index}")(x)
        taps["pooled"] = self.pooling(x)
        taps["segment1"] = self.segment1(taps["pooled"])
        taps["embedding"] = self.embedding(self.segment1_norm(self.segment1_relu(taps["segment1"])))
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers grouped by layer: frame1..frameN, segment1, embedding."""
        return group_by_top_module(self)

    def repeated_blocks(self) -> list[list[str]]:
        """The frame layers, in order: those of equal shapes may share weights (`spaces.sharing`)."""
        return [[f"frame{index}" for index in range(1, self.num_frame_layers + 1)]]
