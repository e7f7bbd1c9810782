"""Speaker-extraction evaluator: prepare mixtures and the FP32 extractor once, then score candidates.

`prepare` builds the training source and the fixed, seeded test mixtures, and trains the teacher
(cached by content hash under the cache directory, like the verification teacher). `evaluate`
compresses the teacher as the candidate's plan says (post-training quantization, or fine-tuning
over the fidelity ladder with QAT, output distillation, sharing and 8-bit activations) and
measures SI-SDRi and SDRi on the test mixtures; the result has the same shape as
`VerificationEvaluator`'s, so the engine treats both tasks alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evaluators.data.mixture_corpora import MixtureSource, evaluation_mixtures, training_source
from evaluators.data.cache import cached_tensors, content_hash
from evaluators.data.mixtures import Mixture, MixtureConfig, SpeakerPool
from evaluators.data.sources import Source
from evaluators.evaluation import Evaluation, Evaluator, ProgressCallback, size_metrics
from evaluators.extraction_finetune import ExtractorFineTuner
from evaluators.extraction_training import ExtractorTrainingConfig, extraction_metrics, train_extractor
from evaluators.fidelity import FidelityConfig
from spaces.compress import CompressedModel, ModelSpec
from spaces.plan import CompressionPlan
from spaces.space import SearchSpace, SpaceConfig

EXTRACTION_VERSION = 2
"""Bump when mixing or teacher training changes, so cached extraction teachers are not reused."""


@dataclass
class PreparedExtraction:
    """Everything a worker needs to evaluate an extraction candidate, computed once per run."""

    spec: ModelSpec
    teacher_state: dict[str, torch.Tensor]
    space: SearchSpace
    test_set: list[Mixture]
    training: MixtureSource
    mixtures: MixtureConfig
    teacher: ExtractorTrainingConfig
    fidelity: FidelityConfig
    seed: int


@dataclass(frozen=True)
class ExtractionSetup:
    """The config sections an extraction evaluator reads (built by `search.tasks` from a run config).

    Attributes:
        spec: The extractor to compress (raw audio at `spec.sample_rate`).
        train_source, test_source: Where training speakers and the test mixtures' speakers come from.
        mixtures: How two-speaker mixtures are made.
        teacher: How the teacher is trained when it is not cached.
        space: The search space the candidates come from.
        fidelity: The fine-tuning ladder.
        seed: Seed of everything random.
        cache_dir: Where mixtures and teachers are cached by content hash.
    """

    spec: ModelSpec
    train_source: Source
    test_source: Source
    mixtures: MixtureConfig
    teacher: ExtractorTrainingConfig
    space: SpaceConfig
    fidelity: FidelityConfig
    seed: int
    cache_dir: str


class ExtractionEvaluator(Evaluator[ExtractionSetup, PreparedExtraction]):
    """Evaluates compression candidates of a target-speaker extractor by SI-SDRi and SDRi (dB)."""

    def prepare(self, setup: ExtractionSetup, progress: ProgressCallback | None = None) -> PreparedExtraction:
        """Training source, test mixtures and the trained teacher (from the cache when present)."""
        progress = progress or (lambda stage, done, total: None)
        spec, mixtures = setup.spec, setup.mixtures
        progress("mixtures", 0, 1)
        training = training_source(mixtures, setup.train_source, spec.sample_rate, setup.cache_dir)
        test_set = evaluation_mixtures(mixtures, setup.test_source, spec.sample_rate, setup.cache_dir)
        progress("mixtures", 1, 1)
        key = content_hash(
            "extractor", EXTRACTION_VERSION, _digest(training), mixtures, spec.architecture(), setup.teacher, setup.seed
        )
        teacher = cached_tensors(
            setup.cache_dir, "teacher", key, lambda: _train_teacher(spec, training, setup, progress)
        )
        return PreparedExtraction(
            spec=spec,
            teacher_state=teacher,
            space=SearchSpace.for_model(setup.space, spec),
            test_set=test_set,
            training=training,
            mixtures=mixtures,
            teacher=setup.teacher,
            fidelity=setup.fidelity,
            seed=setup.seed,
        )

    def evaluate_ladder(
        self, candidate: Mapping[str, Any], prepared: PreparedExtraction
    ) -> Iterator[tuple[int, Evaluation]]:
        """(cumulative fine-tuning steps, evaluation) after each rung, continuing from the previous rung."""
        tuner = _fine_tuner(prepared.space.plan(candidate), prepared)
        for steps in prepared.fidelity.steps:
            tuner.train_to(steps)
            yield steps, _score(tuner.compressed(), prepared)

    def evaluate_reference(self, prepared: PreparedExtraction) -> Evaluation:
        """The FP32 teacher, scored exactly like a candidate (the reference row)."""
        return _score(_fine_tuner(CompressionPlan(), prepared).compressed(), prepared)

    def evaluate_compressed(self, compressed: CompressedModel, prepared: PreparedExtraction) -> Evaluation:
        return _score(compressed, prepared)


def _fine_tuner(plan: CompressionPlan, prepared: PreparedExtraction) -> ExtractorFineTuner:
    return ExtractorFineTuner(
        prepared.spec,
        prepared.teacher_state,
        plan,
        prepared.training,
        prepared.mixtures,
        prepared.fidelity,
        prepared.teacher,
        prepared.seed,
    )


def _score(compressed: CompressedModel, prepared: PreparedExtraction) -> Evaluation:
    """SI-SDRi and SDRi on the test mixtures, next to the size figures of the packed model."""
    metrics = {**extraction_metrics(compressed.model, prepared.test_set), **size_metrics(compressed.description)}
    return Evaluation(metrics, compressed)


def _digest(training: MixtureSource) -> str:
    """Digest of the training audio itself, so a teacher is reused only for the very same data."""
    digest = hashlib.sha256()
    if isinstance(training, SpeakerPool):
        waveforms = [(speaker, audio) for speaker in training.speakers for audio in training.utterances[speaker]]
    else:
        waveforms = [(m.target_speaker, audio) for m in training for audio in (m.mixture, m.target, m.enrollment)]
    for label, waveform in waveforms:
        digest.update(label.encode())
        digest.update(np.ascontiguousarray(waveform, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _train_teacher(spec: ModelSpec, training: MixtureSource, setup: ExtractionSetup, progress: ProgressCallback) -> dict:
    torch.manual_seed(setup.seed)  # the initial weights are part of what the cache key promises
    model = spec.build()
    steps = setup.teacher.steps
    train_extractor(
        model,
        training,
        setup.mixtures,
        spec.sample_rate,
        setup.teacher,
        setup.seed,
        on_step=lambda step, loss: progress(f"teacher (loss {loss:.2f})", step + 1, steps),
    )
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


__all__ = ["ExtractionEvaluator", "ExtractionSetup", "PreparedExtraction"]
