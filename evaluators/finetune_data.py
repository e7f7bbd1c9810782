"""What fine-tuning needs from `prepare`: training crops, the head initialisation and layer sensitivities.

The head initialisation (teacher speaker centroids) and the sensitivities are pure functions of
the teacher and a few settings, so they are cached by content hash next to the teacher in the
run's cache directory: a second run, or a worker, loads them instead of recomputing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from evaluators.data.cache import cached_tensors, content_hash
from evaluators.features import FeatureSet, random_crop
from evaluators.finetune_loss import FineTuneLoss, speaker_centroids
from evaluators.sensitivity import layer_sensitivities
from evaluators.verification_fidelity import VerificationFidelity
from spaces.compress import ModelSpec


@dataclass(frozen=True)
class FineTuneData:
    """Training utterances and the head initialisation fine-tuning needs.

    Attributes:
        features: One `[frames, bins]` tensor per training utterance.
        labels: Speaker index per utterance.
        centroids: `[speakers, dim]` teacher speaker centroids (`speaker_centroids`); None when
            the loss has no classification term.
    """

    features: list[torch.Tensor]
    labels: list[int]
    centroids: torch.Tensor | None


def sample_crops(
    features: list[torch.Tensor], labels: torch.Tensor, count: int, frames: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random crops of random utterances, `[count, frames, bins]`, and their labels."""
    chosen = torch.randint(len(features), (count,), generator=generator)
    crops = torch.stack([random_crop(features[index], frames, generator) for index in chosen.tolist()])
    return crops, labels[chosen]


def prepare_fine_tuning(
    spec: ModelSpec,
    teacher_state: dict[str, torch.Tensor],
    teacher_key: str,
    train: FeatureSet,
    config: VerificationFidelity,
    cache_dir: str | os.PathLike[str],
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[FineTuneData | None, dict[str, float]]:
    """Fine-tuning data (None when the ladder never trains) and the teacher's layer sensitivities.

    Args:
        train: The training utterances (a windowed front-end's split into single windows).
        teacher_key: The teacher's cache key; both cached entries extend it.
        progress: Called with (stage, 0, 1) before and (stage, 1, 1) after each computation
            that is not cached, so a display shows it finished.
    """
    progress = progress or (lambda stage, done, total: None)

    def centroids() -> dict[str, torch.Tensor]:
        progress("speaker centroids", 0, 1)
        teacher = spec.build()
        teacher.load_state_dict(teacher_state)
        computed = {"centroids": speaker_centroids(teacher, train.features, train.labels)}
        progress("speaker centroids", 1, 1)
        return computed

    head = (
        cached_tensors(cache_dir, "centroids", teacher_key, centroids)["centroids"]
        if config.classification_weight
        else None
    )

    def sensitivities() -> dict[str, float]:
        progress("layer sensitivities", 0, 1)
        generator = torch.Generator().manual_seed(seed)
        crops, labels = sample_crops(
            train.features, torch.tensor(train.labels), config.sensitivity_crops, config.crop_frames, generator
        )
        loss = FineTuneLoss.for_fidelity(head, config)
        computed = layer_sensitivities(
            spec, teacher_state, loss, crops, labels, config.sensitivity_quantizer, config.sensitivity_bits
        )
        progress("layer sensitivities", 1, 1)
        return computed

    settings = (
        config.sensitivity_quantizer,
        config.sensitivity_bits,
        config.sensitivity_crops,
        config.crop_frames,
        config.margin,
        config.scale,
        config.distillation_weight,
        seed,
        *([config.classification_weight] if config.classification_weight != 1.0 else []),
    )
    measured = cached_tensors(cache_dir, "sensitivities", content_hash(teacher_key, settings), sensitivities)
    data = FineTuneData(train.features, train.labels, head) if config.trains else None
    return data, measured
