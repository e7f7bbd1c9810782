"""Additive angular margin softmax (ArcFace / AAM-softmax), the usual speaker-embedding loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AAMSoftmax(nn.Module):
    """Cosine classifier over speakers with margin `margin` (radians) on the true class angle."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cosine) + self.margin)
        # Keep the target logit monotonic past pi - margin (the usual "easy margin" fix).
        target = torch.where(cosine > math.cos(math.pi - self.margin), target, cosine - self.margin * math.sin(self.margin))
        one_hot = F.one_hot(labels, cosine.shape[1]).bool()
        logits = self.scale * torch.where(one_hot, target, cosine)
        return F.cross_entropy(logits, labels)
