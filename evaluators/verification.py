"""Speaker-verification evaluator: prepare the corpus and teacher once, then score candidates.

`prepare` does the expensive, shared work (corpus, features, teacher training), cached on disk
by content hash; the result travels to Ray workers through the object store. `evaluate` is a
pure function of (candidate, prepared): quantize, embed every evaluation set, score its trials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluators.data.cache import cached_tensors, content_hash
from evaluators.data.source_features import EvalSet, load_eval_set, load_training_set
from evaluators.data.synthetic import CORPUS_VERSION
from evaluators.features import FbankConfig, FeatureSet
from evaluators.finetune import FidelityConfig, FineTuner
from evaluators.finetune_data import FineTuneData, prepare_fine_tuning
from evaluators.student_training import DistillationConfig, StudentTrainer, trains_student
from evaluators.training import embed_utterances, train_speaker_model
from spaces.compress import CompressedModel, ModelSpec, compress
from spaces.plan import CompressionPlan
from spaces.space import SearchSpace

if TYPE_CHECKING:
    from search.config import RunConfig

ProgressCallback = Callable[[str, int, int], None]
"""Called with (stage description, done, total) during long preparation steps."""


@dataclass
class PreparedVerification:
    """Everything a worker needs to evaluate a candidate, computed once per run."""

    spec: ModelSpec
    teacher_state: dict[str, torch.Tensor]
    space: SearchSpace
    eval_sets: list[EvalSet]
    max_trials: int
    seed: int
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    sensitivities: dict[str, float] = field(default_factory=dict)
    """Loss increase per quantizable layer when it alone is quantized (`evaluators.sensitivity`)."""
    fine_tune_data: FineTuneData | None = None
    """Training data for fine-tuning; None when the fidelity ladder is post-training only."""
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    """How candidates with a student, distillation or sharing train (`evaluators.student_training`)."""

    @property
    def test_features(self) -> list[torch.Tensor]:
        """Features of the first (main) evaluation set."""
        return self.eval_sets[0].features

    @property
    def test_labels(self) -> list[int]:
        """Speaker labels of the first (main) evaluation set."""
        return self.eval_sets[0].labels


@dataclass
class Evaluation:
    """A candidate's quality metrics and the compressed model they were measured on."""

    metrics: dict[str, float]
    compressed: CompressedModel


def model_spec(config: RunConfig) -> ModelSpec:
    """The model the run compresses, with the input format of its features."""
    kwargs = {key: value for key, value in config.model.items() if key != "family"}
    kwargs["num_mel_bins"] = config.features.num_mel_bins
    return ModelSpec(
        family=config.model["family"],
        kwargs=kwargs,
        num_mel_bins=config.features.num_mel_bins,
        frames_per_second=round(1000.0 / config.features.frame_shift_ms),
        sample_rate=config.data.sample_rate,
        side_bits=config.space.side_bits,
    )


def fbank_config(config: RunConfig) -> FbankConfig:
    return FbankConfig(
        num_mel_bins=config.features.num_mel_bins,
        frame_length_ms=config.features.frame_length_ms,
        frame_shift_ms=config.features.frame_shift_ms,
        sample_rate=config.data.sample_rate,
    )


class VerificationEvaluator:
    """Evaluates weight-quantization candidates of a speaker-embedding model by EER and minDCF."""

    def prepare(self, config: RunConfig, progress: ProgressCallback | None = None) -> PreparedVerification:
        """Training features, every evaluation set and the trained teacher, each cached when present."""
        progress = progress or (lambda stage, done, total: None)
        fbank = fbank_config(config)
        training = load_training_set(
            config.data.train, fbank, config.cache_dir, lambda done, total: progress("train features", done, total)
        )
        eval_sets = [
            load_eval_set(
                eval_set,
                fbank,
                config.cache_dir,
                config.evaluation.max_trials,
                config.seed,
                lambda done, total, name=eval_set.name: progress(f"{name} features", done, total),
            )
            for eval_set in config.data.eval
        ]
        train = training.features
        spec = model_spec(config)
        key = content_hash(CORPUS_VERSION, training.identity, fbank, spec.architecture(), config.teacher, config.seed)
        teacher = cached_tensors(
            config.cache_dir, "teacher", key, lambda: self._train_teacher(spec, train, config, progress)
        )
        fine_tune_data, sensitivities = prepare_fine_tuning(
            spec, teacher, key, train, config.fidelity, config.cache_dir, config.seed, progress
        )
        model = spec.build()
        return PreparedVerification(
            spec=spec,
            teacher_state=teacher,
            space=SearchSpace.for_model(config.space, spec, model),
            eval_sets=eval_sets,
            max_trials=config.evaluation.max_trials,
            seed=config.seed,
            fidelity=config.fidelity,
            sensitivities=sensitivities,
            fine_tune_data=fine_tune_data,
            distillation=config.distillation,
        )

    def evaluate(self, candidate: Mapping[str, Any], prepared: PreparedVerification) -> Evaluation:
        """The candidate at the last rung of the fidelity ladder (post-training quantization for `[0]`)."""
        last = None
        for _, last in self.evaluate_ladder(candidate, prepared):
            pass
        return last

    def evaluate_ladder(
        self, candidate: Mapping[str, Any], prepared: PreparedVerification
    ) -> Iterator[tuple[int, Evaluation]]:
        """Fine-tune rung by rung of `prepared.fidelity.steps`, yielding (cumulative steps, evaluation).

        Each rung continues the previous rung's training; rung 0 is post-training quantization,
        and a candidate without quantized layers is evaluated once and yielded at every rung.
        """
        plan = prepared.space.plan(candidate)
        if trains_student(plan):
            yield from self._student_ladder(plan, prepared)
            return
        post_training: Evaluation | None = None
        tuner: FineTuner | None = None
        for steps in prepared.fidelity.steps:
            if steps == 0 or not plan.layers:
                post_training = post_training or self._evaluate_plan(plan, prepared)
                yield steps, post_training
                continue
            if tuner is None:
                if prepared.fine_tune_data is None:
                    raise ValueError("fidelity.steps fine-tunes, but prepare() kept no training data for it")
                tuner = FineTuner(
                    prepared.spec,
                    prepared.teacher_state,
                    plan.layers,
                    prepared.fine_tune_data,
                    prepared.fidelity,
                    prepared.seed,
                    prepared.sensitivities,
                )
            tuner.train_to(steps)
            yield steps, self._evaluate_compressed(tuner.compressed(), prepared)

    def _student_ladder(self, plan: CompressionPlan, prepared: PreparedVerification) -> Iterator[tuple[int, Evaluation]]:
        """A student (or the teacher's architecture, shared or distilled) trained rung by rung."""
        if prepared.fine_tune_data is None:
            raise ValueError("the candidate trains a student, but fidelity.steps has no positive budget to train it")
        trainer = StudentTrainer(
            prepared.spec,
            prepared.teacher_state,
            plan,
            prepared.fine_tune_data,
            prepared.fidelity,
            prepared.distillation,
            prepared.seed,
        )
        for steps, compressed in trainer.ladder():
            yield steps, self._evaluate_compressed(compressed, prepared)

    def evaluate_reference(self, prepared: PreparedVerification) -> Evaluation:
        """The FP32 teacher, scored exactly like a candidate (the reference row)."""
        return self._evaluate_plan(CompressionPlan(), prepared)

    def _evaluate_plan(self, plan: CompressionPlan, prepared: PreparedVerification) -> Evaluation:
        compressed = compress(prepared.spec, prepared.teacher_state, plan.layer_bits, plan.layer_quantizers)
        return self._evaluate_compressed(compressed, prepared)

    def _evaluate_compressed(self, compressed: CompressedModel, prepared: PreparedVerification) -> Evaluation:
        quality = _quality_metrics(compressed.model, prepared)
        layers = [layer for layer in compressed.description.layers if layer.params]
        mean_bits = sum(layer.params * layer.weight_bits for layer in layers) / sum(layer.params for layer in layers)
        metrics = {
            "eer": quality[f"eer@{prepared.eval_sets[0].name}"],
            "min_dcf": quality[f"min_dcf@{prepared.eval_sets[0].name}"],
            "size_bytes": float(compressed.description.size_bytes),
            "params": float(compressed.description.params),
            "mean_weight_bits": mean_bits,
            **quality,
        }
        return Evaluation(metrics, compressed)

    @staticmethod
    def _train_teacher(spec: ModelSpec, train: FeatureSet, config: RunConfig, progress: ProgressCallback) -> dict:
        torch.manual_seed(config.seed)  # the initial weights are part of what the cache key promises
        model = spec.build()
        steps = config.teacher.steps
        return train_speaker_model(
            model,
            spec.kwargs.get("embedding_dim", model.embedding_dim),
            train,
            config.teacher,
            config.seed,
            on_step=lambda step, loss: progress(f"teacher (loss {loss:.2f})", step + 1, steps),
        )


def _quality_metrics(model: torch.nn.Module, prepared: PreparedVerification) -> dict[str, float]:
    """`eer@<set>` and `min_dcf@<set>` of the model on every evaluation set."""
    metrics = {}
    for eval_set in prepared.eval_sets:
        embeddings = embed_utterances(model, eval_set.features).numpy()
        if not np.isfinite(embeddings).all():
            raise FloatingPointError(f"quantized model produced non-finite embeddings on {eval_set.name}")
        scores = eval_set.metrics(embeddings, prepared.max_trials, prepared.seed)
        metrics[f"eer@{eval_set.name}"] = scores.eer
        metrics[f"min_dcf@{eval_set.name}"] = scores.min_dcf
    return metrics


__all__ = ["Evaluation", "PreparedVerification", "VerificationEvaluator", "fbank_config", "model_spec"]
