"""Speaker-extraction evaluator: prepare mixtures and the FP32 extractor once, then score candidates.

`prepare` builds the training source and the fixed, seeded test mixtures, and trains the teacher
(cached by content hash under the cache directory, like the verification teacher). `evaluate`
compresses the teacher as the candidate's plan says (post-training quantization, or fine-tuning
over the fidelity ladder with QAT, output distillation, sharing and 8-bit activations) and
measures SI-SDRi and SDRi on the test mixtures; the result has the same shape as
`VerificationEvaluator`'s, so the engine treats both tasks alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluators.data.mixture_corpora import MixtureSource, evaluation_mixtures, training_source
from evaluators.data.cache import cached_tensors, content_hash
from evaluators.data.mixtures import Mixture, MixtureConfig, SpeakerPool
from evaluators.extraction_finetune import ExtractorFineTuner
from evaluators.extraction_training import ExtractorTrainingConfig, extraction_metrics, train_extractor
from evaluators.finetune import FidelityConfig
from evaluators.verification import Evaluation, ProgressCallback
from spaces.compress import CompressedModel, ModelSpec
from spaces.plan import CompressionPlan
from spaces.space import SearchSpace

if TYPE_CHECKING:
    from search.config import RunConfig

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


def extraction_spec(config: RunConfig) -> ModelSpec:
    """The extractor the run compresses; it reads raw audio at the data's sample rate."""
    kwargs = {key: value for key, value in config.model.items() if key != "family"}
    return ModelSpec(
        config.model["family"],
        kwargs,
        num_mel_bins=0,
        frames_per_second=0,
        sample_rate=config.data.sample_rate,
        side_bits=config.space.side_bits,
    )


class ExtractionEvaluator:
    """Evaluates compression candidates of a target-speaker extractor by SI-SDRi and SDRi (dB)."""

    def prepare(self, config: RunConfig, progress: ProgressCallback | None = None) -> PreparedExtraction:
        """Training source, test mixtures and the trained teacher (from the cache when present)."""
        progress = progress or (lambda stage, done, total: None)
        mixtures, rate = config.mixtures, config.data.sample_rate
        progress("mixtures", 0, 1)
        training = training_source(mixtures, config.data.train, rate, config.cache_dir)
        test_set = evaluation_mixtures(mixtures, config.data.eval[0].source, rate, config.cache_dir)
        progress("mixtures", 1, 1)
        spec = extraction_spec(config)
        key = content_hash(
            "extractor", EXTRACTION_VERSION, _digest(training), mixtures, spec.architecture(), config.teacher, config.seed
        )
        teacher = cached_tensors(
            config.cache_dir, "teacher", key, lambda: _train_teacher(spec, training, config, progress)
        )
        return PreparedExtraction(
            spec=spec,
            teacher_state=teacher,
            space=SearchSpace.for_model(config.space, spec),
            test_set=test_set,
            training=training,
            mixtures=mixtures,
            teacher=config.teacher,
            fidelity=config.fidelity,
            seed=config.seed,
        )

    def evaluate(self, candidate: Mapping[str, Any], prepared: PreparedExtraction) -> Evaluation:
        """The candidate after the last rung of the fidelity ladder."""
        *_, (_, evaluation) = self.evaluate_ladder(candidate, prepared)
        return evaluation

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
    layers = [layer for layer in compressed.description.layers if layer.params and not layer.shared_with]
    mean_bits = sum(layer.params * layer.weight_bits for layer in layers) / sum(layer.params for layer in layers)
    metrics = {
        **extraction_metrics(compressed.model, prepared.test_set),
        "size_bytes": float(compressed.description.size_bytes),
        "params": float(compressed.description.params),
        "mean_weight_bits": mean_bits,
    }
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


def _train_teacher(spec: ModelSpec, training: MixtureSource, config: RunConfig, progress: ProgressCallback) -> dict:
    torch.manual_seed(config.seed)  # the initial weights are part of what the cache key promises
    model = spec.build()
    steps = config.teacher.steps
    train_extractor(
        model,
        training,
        config.mixtures,
        spec.sample_rate,
        config.teacher,
        config.seed,
        on_step=lambda step, loss: progress(f"teacher (loss {loss:.2f})", step + 1, steps),
    )
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


__all__ = ["ExtractionEvaluator", "PreparedExtraction", "extraction_spec"]
