"""Speaker-verification evaluator: prepare the corpus and teacher once, then score candidates.

`prepare` does the expensive, shared work (corpus, features, teacher training), cached on disk
by content hash; the result travels to Ray workers through the object store. `evaluate` is a
pure function of (candidate, prepared): quantize, embed every evaluation set, score its trials.

A candidate with quantized activations is measured with them: its model gets activation
quantizers (`spaces.quant.integer_activations.quantization_points`: at 8 bits where onnxruntime
fuses integer kernels, so it is measured as it will run), calibrated on `CALIBRATION_BATCHES`
training batches and frozen; post-training quantization measures it so, fine-tuning and student
training train with them (their steps learned, LSQ), and the packed weights keep their steps, so
export rebuilds the same model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from evaluators.data.cache import cached_tensors, content_hash, file_digest
from evaluators.data.source_features import EvalSet, load_eval_set, load_training_set
from evaluators.data.sources import DataConfig
from evaluators.data.synthetic import CORPUS_VERSION
from evaluators.evaluation import Evaluation, Evaluator, ProgressCallback, size_metrics
from evaluators.features import FbankConfig, FeatureSet
from evaluators.finetune import FineTuner
from evaluators.finetune_data import FineTuneData, prepare_fine_tuning, sample_crops
from evaluators.student_training import DistillationConfig, StudentTrainer, trains_student
from evaluators.training import TeacherConfig, embed_utterances, train_speaker_model
from evaluators.utterance_features import single_windows, windowed_features
from evaluators.verification_fidelity import VerificationFidelity
from spaces.checkpoints import load_checkpoint, resolve_checkpoint_path
from spaces.compress import CompressedModel, ModelSpec, compress, with_quantized_activations
from spaces.description import FLOAT_BITS
from spaces.knobs import domain_member
from spaces.plan import CompressionPlan
from spaces.quant import ActivationQuantizer
from spaces.space import SearchSpace, SpaceConfig

CALIBRATION_BATCHES = 4
"""Training batches (of `fidelity.batch_size` crops) that set 8-bit activation quantizers' ranges before they freeze."""
_ACTIVATION_BITS_KNOB = "activation_bits"


@dataclass(frozen=True)
class VerificationSetup:
    """The config sections a verification evaluator reads (built by `search.tasks` from a run config).

    Attributes:
        spec: The model to compress, with its input format.
        data: The training source and the evaluation sets.
        fbank: Filterbank settings of every feature set.
        teacher: How the teacher is trained when it is not cached.
        space: The search space the candidates come from.
        fidelity: The fine-tuning ladder and verification's fine-tuning settings.
        distillation: How students are trained.
        max_trials: Most verification trials scored per evaluation set.
        seed: Seed of everything random (teacher, crops, trial sampling).
        cache_dir: Where features and teachers are cached by content hash.
    """

    spec: ModelSpec
    data: DataConfig
    fbank: FbankConfig
    teacher: TeacherConfig
    space: SpaceConfig
    fidelity: VerificationFidelity
    distillation: DistillationConfig
    max_trials: int
    seed: int
    cache_dir: str


@dataclass
class PreparedVerification:
    """Everything a worker needs to evaluate a candidate, computed once per run."""

    spec: ModelSpec
    teacher_state: dict[str, torch.Tensor]
    space: SearchSpace
    eval_sets: list[EvalSet]
    max_trials: int
    seed: int
    fidelity: VerificationFidelity = field(default_factory=VerificationFidelity)
    sensitivities: dict[str, float] = field(default_factory=dict)
    """Loss increase per quantizable layer when it alone is quantized (`evaluators.sensitivity`)."""
    fine_tune_data: FineTuneData | None = None
    """Training data for fine-tuning; None when the fidelity ladder is post-training only."""
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    """How candidates with a student, distillation or sharing train (`evaluators.student_training`)."""
    calibration_batches: list[torch.Tensor] = field(default_factory=list)
    """Training crops that calibrate 8-bit activation quantizers; empty when the space has no such candidate."""

    @property
    def test_features(self) -> list[torch.Tensor]:
        """Features of the first (main) evaluation set."""
        return self.eval_sets[0].features

    @property
    def test_labels(self) -> list[int]:
        """Speaker labels of the first (main) evaluation set."""
        return self.eval_sets[0].labels


class VerificationEvaluator(Evaluator[VerificationSetup, PreparedVerification]):
    """Evaluates weight-quantization candidates of a speaker-embedding model by EER and minDCF."""

    def prepare(self, setup: VerificationSetup, progress: ProgressCallback | None = None) -> PreparedVerification:
        """Training features, every evaluation set and the trained teacher, each cached when present."""
        progress = progress or (lambda stage, done, total: None)
        fbank = setup.fbank
        training = load_training_set(
            setup.data.train, fbank, setup.cache_dir, lambda done, total: progress("train features", done, total)
        )
        eval_sets = [
            load_eval_set(
                eval_set,
                fbank,
                setup.cache_dir,
                setup.max_trials,
                setup.seed,
                lambda done, total, name=eval_set.name: progress(f"{name} features", done, total),
            )
            for eval_set in setup.data.eval
        ]
        train = training.features
        spec = setup.spec
        if setup.teacher.checkpoint is None:
            key = content_hash(CORPUS_VERSION, training.identity, fbank, spec.architecture(), setup.teacher, setup.seed)
            teacher = cached_tensors(
                setup.cache_dir, "teacher", key, lambda: self._train_teacher(spec, train, setup, progress)
            )
        else:  # the user's trained model: loaded, never trained
            progress("teacher checkpoint", 0, 1)
            path = resolve_checkpoint_path(setup.teacher.checkpoint)
            teacher = load_checkpoint(path, setup.teacher.format, spec.build())
            key = content_hash(CORPUS_VERSION, training.identity, fbank, spec.architecture(), file_digest(path), setup.seed)
            progress("teacher checkpoint", 1, 1)
        examples = single_windows(train) if windowed_features(fbank) else train
        fine_tune_data, sensitivities = prepare_fine_tuning(
            spec, teacher, key, examples, setup.fidelity, setup.cache_dir, setup.seed, progress
        )
        model = spec.build()
        space = SearchSpace.for_model(setup.space, spec, model)
        return PreparedVerification(
            spec=spec,
            teacher_state=teacher,
            space=space,
            eval_sets=eval_sets,
            max_trials=setup.max_trials,
            seed=setup.seed,
            fidelity=setup.fidelity,
            sensitivities=sensitivities,
            fine_tune_data=fine_tune_data,
            distillation=setup.distillation,
            calibration_batches=_calibration_batches(space, examples, setup.fidelity, setup.seed),
        )

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
                    plan.activation_bits,
                    prepared.calibration_batches,
                )
            tuner.train_to(steps)
            yield steps, self.evaluate_compressed(tuner.compressed(), prepared)

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
            prepared.calibration_batches,
        )
        for steps, compressed in trainer.ladder():
            yield steps, self.evaluate_compressed(compressed, prepared)

    def evaluate_reference(self, prepared: PreparedVerification) -> Evaluation:
        """The FP32 teacher, scored exactly like a candidate (the reference row)."""
        return self._evaluate_plan(CompressionPlan(), prepared)

    def _evaluate_plan(self, plan: CompressionPlan, prepared: PreparedVerification) -> Evaluation:
        compressed = compress(prepared.spec, prepared.teacher_state, plan.layer_bits, plan.layer_quantizers)
        if plan.activation_bits < FLOAT_BITS:
            batches = [(batch,) for batch in prepared.calibration_batches]
            compressed = with_quantized_activations(prepared.spec, compressed, plan.layers, batches, plan.activation_bits)
        return self.evaluate_compressed(compressed, prepared)

    def evaluate_compressed(self, compressed: CompressedModel, prepared: PreparedVerification) -> Evaluation:
        """EER and minDCF on every evaluation set, next to the size figures of the packed model."""
        quality = _quality_metrics(compressed.model, prepared)
        metrics = {
            "eer": quality[f"eer@{prepared.eval_sets[0].name}"],
            "min_dcf": quality[f"min_dcf@{prepared.eval_sets[0].name}"],
            **size_metrics(compressed.description),
            **quality,
        }
        return Evaluation(metrics, compressed)

    @staticmethod
    def _train_teacher(spec: ModelSpec, train: FeatureSet, setup: VerificationSetup, progress: ProgressCallback) -> dict:
        torch.manual_seed(setup.seed)  # the initial weights are part of what the cache key promises
        model = spec.build()
        steps = setup.teacher.steps
        return train_speaker_model(
            model,
            spec.kwargs.get("embedding_dim", model.embedding_dim),
            train,
            setup.teacher,
            setup.seed,
            on_step=lambda step, loss: progress(f"teacher (loss {loss:.2f})", step + 1, steps),
        )


def _calibration_batches(space: SearchSpace, examples: FeatureSet, fidelity: VerificationFidelity, seed: int) -> list[torch.Tensor]:
    """Seeded training crops for the activation quantizers of candidates with quantized
    activations; none when the space has no such candidate (they travel to every worker with the
    prepared data)."""
    domain = space.knobs.get(_ACTIVATION_BITS_KNOB)
    if domain is None or not any(domain_member(domain, bits)[0] for bits in ActivationQuantizer.allowed_bits):
        return []
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(examples.labels)
    return [
        sample_crops(examples.features, labels, fidelity.batch_size, fidelity.crop_frames, generator)[0]
        for _ in range(CALIBRATION_BATCHES)
    ]


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


__all__ = ["PreparedVerification", "VerificationEvaluator", "VerificationSetup"]
