"""x-vector TDNN speaker-embedding family (Snyder et al. 2018, WeSpeaker's XVEC).

Five frame-level TDNN layers, statistics pooling and two segment-level linear layers. The
embedding is the output of the second segment layer (WeSpeaker's default with two embedding
layers): about 4.61M parameters with 80 mel bins and 512 dimensions. `channels` and
`pooling_channels` are the width knobs that build a narrow distillation student.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.models.layers import StatisticsPooling, TdnnBlock, group_by_top_module

_FRAME_LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))
"""(kernel size, dilation) of the five frame-level layers."""


class XVector(nn.Module):
    """x-vector speaker encoder: features `[batch, frames, bins]` -> embeddings `[batch, dim]`.

    Args:
        num_mel_bins: Filterbank channels of the input.
        channels: Width of the first four frame-level layers.
        pooling_channels: Width of the fifth frame-level layer, the one that is pooled.
        embedding_dim: Size of both segment-level layers, hence of the embedding.
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        channels: int = 512,
        pooling_channels: int = 1500,
        embedding_dim: int = 512,
    ) -> None:
        super().__init__()
        sizes = dict(
            num_mel_bins=num_mel_bins, channels=channels, pooling_channels=pooling_channels, embedding_dim=embedding_dim
        )
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        widths = [num_mel_bins] + [channels] * 4 + [pooling_channels]
        frame_layers = [
            TdnnBlock(widths[index], widths[index + 1], kernel_size, dilation)
            for index, (kernel_size, dilation) in enumerate(_FRAME_LAYERS)
        ]
        self.frame1, self.frame2, self.frame3, self.frame4, self.frame5 = frame_layers
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
            "frame5" `[B, pooling_channels, T]`, "pooled" `[B, 2 * pooling_channels]`, "segment1"
            (first segment layer before its ReLU) and "embedding", both `[B, embedding_dim]`.
        """
        taps = {"frame1": self.frame1(features.transpose(1, 2))}
        taps["frame2"] = self.frame2(taps["frame1"])
        taps["frame3"] = self.frame3(taps["frame2"])
        taps["frame4"] = self.frame4(taps["frame3"])
        taps["frame5"] = self.frame5(taps["frame4"])
        taps["pooled"] = self.pooling(taps["frame5"])
        taps["segment1"] = self.segment1(taps["pooled"])
        taps["embedding"] = self.embedding(self.segment1_norm(self.segment1_relu(taps["segment1"])))
        return taps["embedding"], taps

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers grouped by layer: frame1-frame5, segment1, embedding."""
        return group_by_top_module(self)
