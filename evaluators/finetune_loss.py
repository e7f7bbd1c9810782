"""The loss that fine-tunes a compressed speaker model: AAM-softmax plus cosine distillation.

The classification head is not cached with the teacher (teacher training discards its head);
instead its rows start at the teacher's L2-normalised per-speaker mean embeddings over the
training set. For the teacher those rows already classify well, so at step 0 the loss measures
only what quantization broke, and a few hundred steps are enough to repair it. The distillation
term `1 - cos(student, teacher)` on the same crop pulls each embedding back to where the FP32
teacher put it, which a verification back-end (cosine scoring) relies on more than on the
classification itself.

A pretrained model comes without its training data or speaker labels: with
`classification_weight` 0 (the default when the teacher is a checkpoint) the FP32 teacher's
embeddings are the only target, so any speech can fine-tune it and no head is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.aam_softmax import AAMSoftmax
from evaluators.training import embed_utterances
from evaluators.verification_fidelity import VerificationFidelity


def speaker_centroids(model: nn.Module, features: list[torch.Tensor], labels: list[int]) -> torch.Tensor:
    """L2-normalised mean of each speaker's L2-normalised utterance embeddings, `[speakers, dim]`."""
    embeddings = F.normalize(embed_utterances(model, features))
    index = torch.tensor(labels)
    sums = torch.zeros(int(index.max()) + 1, embeddings.shape[1]).index_add_(0, index, embeddings)
    return F.normalize(sums)


class FineTuneLoss(nn.Module):
    """`classification_weight * AAM-softmax(student) + distillation_weight * mean(1 - cos(student, teacher))`.

    Args:
        centroids: `[speakers, dim]` initial head rows (see `speaker_centroids`); None without
            the classification term.
        margin: AAM angular margin (radians).
        scale: AAM logit scale.
        distillation_weight: Weight of the cosine distillation term (0 turns it off).
        classification_weight: Weight of the AAM-softmax term (0: no head, no labels needed).
    """

    def __init__(
        self,
        centroids: torch.Tensor | None,
        margin: float,
        scale: float,
        distillation_weight: float,
        classification_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.head = None
        if classification_weight:
            if centroids is None:
                raise ValueError("the classification term needs speaker centroids to start its head from")
            self.head = AAMSoftmax(centroids.shape[1], centroids.shape[0], margin=margin, scale=scale)
            with torch.no_grad():
                self.head.weight.copy_(centroids)
        self.distillation_weight = distillation_weight
        self.classification_weight = classification_weight

    @classmethod
    def for_fidelity(
        cls, centroids: torch.Tensor | None, fidelity: VerificationFidelity, distillation_weight: float | None = None
    ) -> FineTuneLoss:
        """The loss a `fidelity:` block sets (its distillation weight unless `distillation_weight` is given)."""
        if distillation_weight is None:
            distillation_weight = fidelity.distillation_weight
        return cls(centroids, fidelity.margin, fidelity.scale, distillation_weight, fidelity.classification_weight)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, teacher_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        loss = embeddings.new_zeros(())
        if self.head is not None:
            loss = loss + self.classification_weight * self.head(embeddings, labels)
        if self.distillation_weight and teacher_embeddings is not None:
            distance = 1.0 - F.cosine_similarity(embeddings, teacher_embeddings, dim=1)
            loss = loss + self.distillation_weight * distance.mean()
        return loss
