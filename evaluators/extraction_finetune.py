"""Compress a trained extractor as a `CompressionPlan` says, fine-tuning it rung by rung (TinyWASE).

From the FP32 teacher (or a student sliced from it, `spaces.students`): the separator's stacks
are tied when the plan shares them (`spaces.sharing`), every quantized layer gets its family's
fake-quantizer (`spaces.quant.qat`: LSQ, k-means centroids, straight-through...), and with
sub-32-bit activations the model gets activation quantizers (at 8 bits where onnxruntime's
integer kernels need them, narrower grids at the input of every quantized layer:
`spaces.quant.integer_activations.quantization_points`), calibrated on a few training batches
behind the fake-quantized weights; their steps train with the model and are packed with its
weights, so export rebuilds the model measured. Fine-tuning then minimises the extraction loss plus
lambda x negative SI-SDR to the FP32 teacher's estimate (output distillation). With 0 steps this
is post-training quantization. `train_to` continues where it stopped, so a fidelity ladder
never repeats work.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch

from evaluators.data.mixture_corpora import MixtureSource
from evaluators.data.mixtures import MixtureBatch, MixtureConfig, training_batch
from evaluators.extraction_training import ExtractorTrainingConfig, LossTerms, segment_samples, training_step
from evaluators.fidelity import FidelityConfig
from evaluators.training import TrainingError
from spaces.compress import CompressedModel, ModelSpec, finalize_compressed
from spaces.description import FLOAT_BITS
from spaces.plan import CompressionPlan
from spaces.quant.integer_activations import quantize_activations
from spaces.quant.qat import after_step, attach_fake_quantizers, export_quantized, without_fake_quantizers
from spaces.sharing import share_repeated_blocks
from spaces.students import build_student, student_layers

EXTRACTION_TAPS = ("estimate",)
"""What an extractor distils: the teacher's output waveform."""

CALIBRATION_BATCHES = 4
"""Training batches that set the activation quantizers' ranges before they freeze."""


class ExtractorFineTuner:
    """One candidate's compressed extractor; `train_to` fine-tunes further, `compressed` snapshots.

    Args:
        spec: The teacher's model.
        teacher_state: FP32 teacher weights (the starting point and the distillation target).
        plan: What to build: quantized layers, activation bits, student, distillation, sharing.
        source: Training mixtures (for fine-tuning and activation calibration).
        mixtures: Training segment lengths and level range.
        fidelity: Learning rate, batch size and the default distillation weight.
        training: The teacher's training settings (cue-loss weight, gradient clipping).
        seed: Seed of the training batches.
    """

    def __init__(
        self,
        spec: ModelSpec,
        teacher_state: Mapping[str, torch.Tensor],
        plan: CompressionPlan,
        source: MixtureSource,
        mixtures: MixtureConfig,
        fidelity: FidelityConfig,
        training: ExtractorTrainingConfig,
        seed: int,
    ) -> None:
        self.distill_weight = _distillation_weight(plan, fidelity)
        self.source, self.mixtures, self.fidelity, self.training = source, mixtures, fidelity, training
        self.segment, self.enrollment = segment_samples(mixtures, spec.sample_rate)
        self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        teacher = spec.build()
        teacher.load_state_dict(teacher_state)
        teacher.eval().requires_grad_(False)
        if plan.student is not None:
            self.spec, self.student = build_student(spec, plan.student, teacher_state, share=plan.share)
        else:
            self.spec, self.student = spec, copy.deepcopy(teacher).requires_grad_(True)
            if plan.share:
                share_repeated_blocks(self.student)
        layers = student_layers(plan.layers, teacher, self.student)  # tied layers follow their owner
        self.terms = LossTerms(cue_weight=training.cue_weight, distill_weight=self.distill_weight)
        if self.distill_weight:
            self.terms.teacher = teacher
        attach_fake_quantizers(self.student, layers, fidelity.qat_options)  # their parameters join the student's
        if plan.activation_bits < FLOAT_BITS:
            batches = [(batch.mixture, batch.enrollment) for batch in (self._batch() for _ in range(CALIBRATION_BATCHES))]
            example = self.spec.example_inputs(self.student)
            quantize_activations(self.student, layers, example, batches, plan.activation_bits)  # their steps join the student's
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=fidelity.learning_rate)
        self.steps_done = 0

    def train_to(self, steps: int) -> None:
        """Fine-tune until `steps` optimiser steps are done in total (continuing, never restarting)."""
        if steps < self.steps_done:
            raise ValueError(f"cannot fine-tune back to {steps} steps: {self.steps_done} already done")
        self.student.train()
        while self.steps_done < steps:
            loss = training_step(self.student, self._batch(), self.optimizer, self.terms, self.training.clip_norm)
            if not np.isfinite(loss):
                raise TrainingError(
                    f"fine-tuning: non-finite loss {loss} at step {self.steps_done}; lower fidelity.learning_rate"
                )
            self.steps_done += 1
            after_step(self.student, self.steps_done, self.steps_done / max(1, self.fidelity.steps[-1]))
        self.student.eval()

    def compressed(self) -> CompressedModel:
        """The model as it would ship now: exported codes and activation steps, packed and described."""
        return finalize_compressed(self.spec, without_fake_quantizers(self.student), export_quantized(self.student))

    def _batch(self) -> MixtureBatch:
        mixtures = self.mixtures
        return training_batch(self.source, self._rng, self.fidelity.batch_size, self.segment, self.enrollment, mixtures.level_db)


def _distillation_weight(plan: CompressionPlan, fidelity: FidelityConfig) -> float:
    """Lambda of output distillation: the candidate's when it searches one, else the fidelity block's."""
    if plan.distillation is None:
        return fidelity.distillation_weight
    if tuple(plan.distillation.taps) != EXTRACTION_TAPS:
        taps = list(plan.distillation.taps)
        raise ValueError(f"distill.taps={taps}: an extractor distils its output only; use {list(EXTRACTION_TAPS)}")
    return plan.distillation.weight

