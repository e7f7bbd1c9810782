"""Train a candidate's student by distillation from the FP32 teacher, rung by rung, and quantize it.

What a `CompressionPlan` with a student, a distillation or sharing means:

1. Build the student (`spaces.students`): the plan's family, width and depth, repeated blocks tied
   when `share`. Without a student plan the student is the teacher's own architecture.
   Initialisation (`distillation.init`): "slice" starts from the teacher's leading channels and
   first blocks (only within the teacher's family, random otherwise), "random" from scratch.
2. Train it on random crops (`fidelity.batch_size`, `fidelity.crop_frames`) with AAM-softmax
   (head initialised from the teacher's speaker centroids, as in fine-tuning; `task_weight`)
   plus the plan's weight x the distillation loss to the frozen FP32 teacher at the plan's taps
   (`evaluators.distillation`).
3. Distillation-aware quantization (TinyWASE): over the last `quantized_fraction` of the ladder's
   budget (all of it when the student is the teacher's architecture and starts from its
   weights), the plan's quantized layers train behind their fake-quantizers
   (`spaces.quant.qat`) with the same loss, so the FP32 teacher's outputs stay a target while
   the low-bit weights are learned. Tied layers share their owner's fake-quantizer. A plan with
   quantized activations gets its activation quantizers at the same moment, calibrated on the
   fake-quantized student (`spaces.quant.integer_activations.quantize_activations`), their steps
   learned from then on.
4. `compressed()` at any rung: fake-quantized layers exported, the others quantized post-training
   (with activation quantizers calibrated on that model when the plan quantizes activations).

The budget is the run's fidelity ladder (`fidelity.steps`, cumulative): `train_to` continues from
where it stopped, so the multi-fidelity search spends long training only on promising students.
The learning rate is constant for the same reason (a rung's result does not depend on later rungs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from evaluators.distillation import FRAME_LOSSES, UTTERANCE_LOSSES, DistillationLoss
from evaluators.verification_fidelity import VerificationFidelity
from evaluators.finetune_data import FineTuneData, sample_crops
from evaluators.finetune_loss import FineTuneLoss
from evaluators.training import TrainingError
from spaces.compress import CompressedModel, ModelSpec, compress, finalize_compressed, with_quantized_activations
from spaces.description import FLOAT_BITS
from spaces.plan import CompressionPlan, LayerQuantization, StudentPlan
from spaces.quant.integer_activations import activation_quantizers, attach_stored_activation_quantizers, quantize_activations
from spaces.quant.qat import QatOptions, after_step, attach_fake_quantizers, export_quantized, fake_quantized_layers
from spaces.sharing import shared_layers
from spaces.students import build_student, student_layers

INITS = ("slice", "random")
_EXAMPLE_CROPS = 2


@dataclass(frozen=True)
class DistillationConfig:
    """The `distillation:` block: how students are trained (their budget is `fidelity.steps`).

    Attributes:
        init: "slice" (from the teacher's leading channels) or "random".
        learning_rate: Adam learning rate of the student, its head and projections (constant).
        task_weight: Weight of the AAM-softmax loss beside the distillation loss (0: distillation only).
        utterance_loss: "cosine" or "relative_mse" for utterance-level taps and concatenations.
        frame_loss: "frames" (per frame, time-aligned) or "statistics" (pooled mean and std).
        quantized_fraction: Final fraction of the ladder's budget a student trains quantization-aware.
    """

    init: str = "slice"
    learning_rate: float = 3e-3
    task_weight: float = 1.0
    utterance_loss: str = "cosine"
    frame_loss: str = "frames"
    quantized_fraction: float = 0.5

    def __post_init__(self) -> None:
        choices = (("init", INITS), ("utterance_loss", UTTERANCE_LOSSES), ("frame_loss", FRAME_LOSSES))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ValueError(f"distillation.{key}={getattr(self, key)!r}: expected one of {list(allowed)}")
        if not self.learning_rate > 0:
            raise ValueError(f"distillation.learning_rate={self.learning_rate}: must be > 0")
        if not self.task_weight >= 0:
            raise ValueError(f"distillation.task_weight={self.task_weight}: must be >= 0")
        if not 0 <= self.quantized_fraction <= 1:
            raise ValueError(f"distillation.quantized_fraction={self.quantized_fraction}: must be in [0, 1]")


def trains_student(plan: CompressionPlan) -> bool:
    """Whether `plan` needs a student trained by this module (rather than fine-tuning the teacher)."""
    return plan.student is not None or plan.distillation is not None or plan.share


class StudentTrainer:
    """One candidate's student: `train_to` continues its training, `compressed` snapshots it.

    Args:
        teacher_spec, teacher_state: The FP32 teacher (distillation target, slicing source).
        plan: The candidate's plan (student, distillation, sharing, quantization of teacher layers).
        data: Training utterances and the head initialisation (teacher speaker centroids).
        fidelity: The ladder (its last rung is the full budget), batch and crop sizes, AAM and
            QAT settings.
        config: The `distillation:` block.
        seed: Seed of the student's random initialisation and of the crop sampling.
        calibration_batches: Input batches that set the activation quantizers' ranges (needed
            when the plan quantizes activations).
    """

    def __init__(
        self,
        teacher_spec: ModelSpec,
        teacher_state: Mapping[str, torch.Tensor],
        plan: CompressionPlan,
        data: FineTuneData,
        fidelity: VerificationFidelity,
        config: DistillationConfig = DistillationConfig(),
        seed: int = 0,
        calibration_batches: Sequence[torch.Tensor] = (),
    ) -> None:
        student = plan.student or StudentPlan(teacher_spec.family)
        slice_teacher = config.init == "slice" and student.family == teacher_spec.family
        torch.manual_seed(seed)
        self.spec, self.student = build_student(
            teacher_spec, student, teacher_state if slice_teacher else None, share=plan.share
        )
        self.teacher = teacher_spec.build()
        self.teacher.load_state_dict(teacher_state)
        self.teacher.eval().requires_grad_(False)
        self.layers = student_layers(plan.layers, self.teacher, self.student)
        self.data, self.fidelity, self.config = data, fidelity, config
        self.activation_bits = plan.activation_bits
        self._calibration = [(batch,) for batch in calibration_batches]
        self.weight = plan.distillation.weight if plan.distillation is not None else 0.0
        if not self.weight and not config.task_weight:
            raise TrainingError("student training without a loss: distill.weight and distillation.task_weight are 0")
        self.task = FineTuneLoss.for_fidelity(data.centroids, fidelity, distillation_weight=0.0)
        self.distillation = self._distillation_loss(plan) if self.weight else None
        parameters = [*self.student.parameters(), *self.task.parameters()]
        if self.distillation is not None:
            parameters += list(self.distillation.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
        budget = fidelity.steps[-1]
        from_teacher = plan.student is None and slice_teacher
        self.quantize_at = 0 if from_teacher else round(budget * (1.0 - config.quantized_fraction))
        self._generator = torch.Generator().manual_seed(seed)
        self._labels = torch.tensor(data.labels)
        self.steps_done = 0
        self.student.train()
        self._attach_when_due()

    @property
    def quantizing(self) -> bool:
        """Whether the quantized layers train behind their fake-quantizers now."""
        return bool(fake_quantized_layers(self.student))

    def train_to(self, steps: int) -> None:
        """Train until `steps` optimiser steps are done in total (continuing, never restarting)."""
        if steps < self.steps_done:
            raise ValueError(f"cannot train the student back to {steps} steps: {self.steps_done} already done")
        while self.steps_done < steps:
            self._attach_when_due()
            self._step()
        self._attach_when_due()

    def ladder(self) -> Iterator[tuple[int, CompressedModel]]:
        """Train rung by rung of `fidelity.steps`, yielding (cumulative steps, the student as it ships)."""
        for steps in self.fidelity.steps:
            self.train_to(steps)
            yield steps, self.compressed()

    def compressed(self) -> CompressedModel:
        """The student as it would ship now: trained low-bit layers exported, or quantized post-training."""
        plain = self._plain_student()
        if self.quantizing:
            return finalize_compressed(self.spec, plain, export_quantized(self.student))
        layer_bits = {name: layer.bits for name, layer in self.layers.items()}
        quantizers = {name: layer.quantizer for name, layer in self.layers.items()}
        compressed = compress(self.spec, plain.state_dict(), layer_bits, quantizers)
        if self.activation_bits < FLOAT_BITS:
            compressed = with_quantized_activations(self.spec, compressed, self.layers, self._calibration, self.activation_bits)
        return compressed

    def _distillation_loss(self, plan: CompressionPlan) -> DistillationLoss:
        generator = torch.Generator().manual_seed(0)
        example, _ = sample_crops(
            self.data.features, torch.tensor(self.data.labels), _EXAMPLE_CROPS, self.fidelity.crop_frames, generator
        )
        with torch.no_grad():
            teacher_taps = self.teacher.forward_with_taps(example)[1]
            self.student.eval()
            student_taps = self.student.forward_with_taps(example)[1]
        return DistillationLoss(
            plan.distillation, teacher_taps, student_taps, self.config.utterance_loss, self.config.frame_loss
        )

    def _attach_when_due(self) -> None:
        if self.layers and not self.quantizing and self.steps_done >= self.quantize_at:
            added = _attach_shared_fake_quantizers(self.student, self.layers, self.fidelity.qat_options)
            self.optimizer.add_param_group({"params": added})
            if self.activation_bits < FLOAT_BITS:
                example = self.spec.example_inputs(self.student)
                activations = quantize_activations(self.student, self.layers, example, self._calibration, self.activation_bits)
                self.optimizer.add_param_group({"params": [step for quantizer in activations.values() for step in quantizer.parameters()]})

    def _step(self) -> None:
        crops, labels = sample_crops(
            self.data.features, self._labels, self.fidelity.batch_size, self.fidelity.crop_frames, self._generator
        )
        embeddings, student_taps = self.student.forward_with_taps(crops)
        loss = self.config.task_weight * self.task(embeddings, labels, None) if self.config.task_weight else 0.0
        if self.distillation is not None:
            with torch.no_grad():
                teacher_taps = self.teacher.forward_with_taps(crops)[1]
            loss = loss + self.weight * self.distillation(student_taps, teacher_taps)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"student training: non-finite loss {loss.item()} at step {self.steps_done}; "
                "lower distillation.learning_rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        if self.quantizing:
            after_step(self.student, self.steps_done, self.steps_done / max(1, self.fidelity.steps[-1]))

    def _plain_student(self) -> nn.Module:
        """A fresh (tied) student holding the latent float weights and the activation quantizers,
        without fake-quantizers."""
        state = {}
        for key, value in self.student.state_dict().items():
            key = key.replace(".parametrizations.weight.original", ".weight")
            if ".parametrizations." not in key:  # the fake-quantizers' own steps and centroids
                state[key] = value
        plain = self.spec.build()
        attach_stored_activation_quantizers(plain, list(activation_quantizers(self.student)), self.activation_bits)
        plain.load_state_dict(state)
        return plain.eval()


def _attach_shared_fake_quantizers(
    model: nn.Module, layers: Mapping[str, LayerQuantization], options: QatOptions
) -> list[nn.Parameter]:
    """Fake-quantize the named layers; a tied layer reuses its owner's fake-quantizer (one set of codes)."""
    aliases = shared_layers(model)
    owned = {name: layer for name, layer in layers.items() if name not in aliases}
    added = attach_fake_quantizers(model, owned, options)
    owners = fake_quantized_layers(model)
    for alias, owner in aliases.items():
        if alias in layers:
            parametrize.register_parametrization(model.get_submodule(alias), "weight", owners[owner], unsafe=True)
    return added


__all__ = ["INITS", "DistillationConfig", "StudentTrainer", "trains_student"]
