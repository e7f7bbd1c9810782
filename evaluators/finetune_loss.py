"""The loss that fine-tunes a compressed speaker model: AAM-softmax plus cosine distillation.

The classification head is not cached with the teacher (teacher training discards its head);
instead its rows start at the teacher's L2-normalised per-speaker mean embeddings over the
training set. For the teacher those rows already classify well, so at step 0 the loss measures
only what quantization broke, and a few hundred steps are enough to repair it. The distillation
term `1 - cos(student, teacher)` on the same crop pulls each embedding back to where the FP32
teacher put it, which a verification back-end (cosine scoring) relies on more than on the
classification itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.aam_softmax import AAMSoftmax
from evaluators.training import embed_utterances


def speaker_centroids(model: nn.Module, features: list[torch.Tensor], labels: list[int]) -> torch.Tensor:
    """L2-normalised mean of each speaker's L2-normalised utterance embeddings, `[speakers, dim]`."""
    embeddings = F.normalize(embed_utterances(model, features))
    index = torch.tensor(labels)
    sums = torch.zeros(int(index.max()) + 1, embeddings.shape[1]).index_add_(0, index, embeddings)
    return F.normalize(sums)


class FineTuneLoss(nn.Module):
    """`AAM-softmax(student) + distillation_weight * mean(1 - cos(student, teacher))`.

    Args:
        centroids: `[speakers, dim]` initial head rows (see `speaker_centroids`).
        margin: AAM angular margin (radians).
        scale: AAM logit scale.
        distillation_weight: Weight of the cosine distillation term (0 turns it off).
    """

    def __init__(self, centroids: torch.Tensor, margin: float, scale: float, distillation_weight: float) -> None:
        super().__init__()
        self.head = AAMSoftmax(centroids.shape[1], centroids.shape[0], margin=margin, scale=scale)
        with torch.no_grad():
            self.head.weight.copy_(centroids)
        self.distillation_weight = distillation_weight

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, teacher_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        loss = self.head(embeddings, labels)
        if self.distillation_weight and teacher_embeddings is not None:
            distance = 1.0 - F.cosine_similarity(embeddings, teacher_embeddings, dim=1)
            loss = loss + self.distillation_weight * distance.mean()
        return loss
