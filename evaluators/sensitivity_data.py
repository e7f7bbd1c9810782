"""The batches and loss a speaker-verification teacher's sensitivities are measured on.

The loss is the one fine-tuning minimises (`FineTuneLoss` as the `fidelity:` block sets it): the
AAM-softmax task loss on the speaker labels, with its head started at the teacher's speaker
centroids, when `fidelity.classification_weight` is set (a teacher trained here), plus the
distillation loss to the FP32 teacher's embeddings; a loaded checkpoint's default
(`classification_weight` 0) leaves the distillation loss alone, which needs no labels. The
crops are drawn with the estimator's own seed, not the run's, so the cached table of a teacher
is reused by every seed and run that uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from evaluators.data.cache import cached_tensors, content_hash
from evaluators.data.source_features import load_training_set
from evaluators.finetune_data import sample_crops
from evaluators.finetune_loss import FineTuneLoss, speaker_centroids
from evaluators.sensitivity_estimators import DataRequest, SensitivityData
from evaluators.utterance_features import single_windows, windowed_features
from evaluators.verification import VerificationSetup

Progress = Callable[[str, int, int], None]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes and values: the teacher's identity in cache keys.

    Hashing the weights themselves keys a cache entry by the teacher whatever trained or loaded
    it, so a table is shared by every config that ends up with the same teacher.
    """
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class VerificationSensitivityData:
    """Where a verification run's sensitivity batches come from: its training set and `fidelity:` loss."""

    setup: VerificationSetup

    def identity(self, request: DataRequest) -> str:
        """What the batches and the loss depend on, read from the config alone (no data loaded)."""
        fidelity = self.setup.fidelity
        loss = (fidelity.margin, fidelity.scale, fidelity.distillation_weight, fidelity.classification_weight)
        return content_hash(self.setup.data.train, self.setup.fbank, fidelity.crop_frames, loss, request)

    def load(
        self, teacher_state: Mapping[str, torch.Tensor], request: DataRequest, progress: Progress | None = None
    ) -> SensitivityData:
        """`request.batches` batches of training crops and the fine-tuning loss of the teacher."""
        progress = progress or (lambda stage, done, total: None)
        setup = self.setup
        training = load_training_set(
            setup.data.train, setup.fbank, setup.cache_dir, lambda done, total: progress("train features", done, total)
        )
        examples = single_windows(training.features) if windowed_features(setup.fbank) else training.features

        def centroids() -> dict[str, torch.Tensor]:
            progress("speaker centroids", 0, 1)
            teacher = setup.spec.build()
            teacher.load_state_dict(teacher_state)
            computed = {"centroids": speaker_centroids(teacher, examples.features, examples.labels)}
            progress("speaker centroids", 1, 1)
            return computed

        head = None
        if setup.fidelity.classification_weight:
            key = content_hash(state_digest(teacher_state), training.identity, setup.fbank)
            head = cached_tensors(setup.cache_dir, "sensitivity-centroids", key, centroids)["centroids"]
        generator = torch.Generator().manual_seed(request.seed)
        labels = torch.tensor(examples.labels)
        batches = tuple(
            sample_crops(examples.features, labels, request.batch_size, setup.fidelity.crop_frames, generator)
            for _ in range(request.batches)
        )
        return SensitivityData(batches, FineTuneLoss.for_fidelity(head, setup.fidelity), self.identity(request))


__all__ = ["VerificationSensitivityData", "state_digest"]
