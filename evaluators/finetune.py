"""Quantization-aware fine-tuning of a compressed candidate, continued rung by rung of the fidelity ladder.

A run's `fidelity:` block sets the ladder of cumulative step budgets (`steps`, 0 = post-training
quantization only); the budget is not a searched knob. `FineTuner` starts from the FP32 teacher
with every quantized layer behind its family's fake-quantizer (`spaces.quant.qat`: LSQ steps,
k-means centroids, learned binary levels, or straight-through), trains on random crops of the
training set, and can be asked for the compressed model at any point; asking for more steps
continues from where it stopped, so a ladder never repeats work. With `msft` the layer groups are
quantized one stage at a time over the first rung (`evaluators.msft`).

Loss: AAM-softmax over a head initialised from the teacher's per-speaker mean embeddings, plus
`distillation_weight` x cosine distance to the teacher's embedding of the same crop
(`evaluators.finetune_loss`), plus `tap_weight` x the relative squared error of the
`distillation_taps` (intermediate outputs, e.g. every frame of GE2E's last LSTM layer) to the
teacher's; with `max_grad_norm` the gradients are clipped to that global norm first.
docs/quantization.md records the measurements that chose the defaults.

Everything is seeded: the same candidate, data and seed give the same model on the same machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from evaluators.distillation import relative_squared_error
from evaluators.finetune_data import FineTuneData, sample_crops
from evaluators.finetune_loss import FineTuneLoss
from evaluators.msft import msft_stages, stage_start_steps
from evaluators.training import TrainingError
from evaluators.verification_fidelity import VerificationFidelity
from spaces.compress import CompressedModel, ModelSpec, finalize_compressed
from spaces.description import FLOAT_BITS
from spaces.plan import LayerQuantization
from spaces.quant import get_quantizer
from spaces.quant.integer_activations import quantize_activations
from spaces.quant.qat import after_step, attach_fake_quantizers, export_quantized, without_fake_quantizers


class FineTuner:
    """Fine-tunes one candidate from the teacher; `train_to` continues, `compressed` snapshots.

    Args:
        spec: The model to build.
        teacher_state: FP32 teacher weights (the starting point and the distillation target).
        layers: Quantization per quantized layer name (a `CompressionPlan.layers`).
        data: Training data and head initialisation.
        config: The fidelity block (loss, optimiser and MSFT settings, and the ladder).
        seed: Seed of the crop sampling.
        sensitivities: Layer sensitivities, needed when `config.msft_order` is "sensitivity".
        activation_bits: The candidate's activation bits: below `FLOAT_BITS` the student trains
            with activation quantizers (`spaces.quant.integer_activations.quantization_points`: at
            8 bits where integer kernels need them), calibrated on `calibration_batches` behind the
            first stage's fake-quantizers, their steps learned.
        calibration_batches: Input batches that set the activation quantizers' ranges.
    """

    def __init__(
        self,
        spec: ModelSpec,
        teacher_state: Mapping[str, torch.Tensor],
        layers: Mapping[str, LayerQuantization],
        data: FineTuneData,
        config: VerificationFidelity,
        seed: int,
        sensitivities: Mapping[str, float] | None = None,
        activation_bits: int = FLOAT_BITS,
        calibration_batches: Sequence[torch.Tensor] = (),
    ) -> None:
        self.spec, self.layers, self.data, self.config = spec, dict(layers), data, config
        self.student = spec.build()
        self.student.load_state_dict(teacher_state)
        self.student.train()
        self.teacher = None
        if config.distillation_weight or config.distillation_taps:
            self.teacher = spec.build()
            self.teacher.load_state_dict(teacher_state)
            self.teacher.eval().requires_grad_(False)
        self.loss = FineTuneLoss.for_fidelity(data.centroids, config)
        self.optimizer = torch.optim.Adam([*self.student.parameters(), *self.loss.parameters()], lr=config.learning_rate)
        if config.msft:
            stages = msft_stages(self.student.layer_groups(), self.layers, sensitivities or {}, config.msft_order)
            first_rung = next(step for step in config.steps if step > 0) if config.trains else 0
            starts = stage_start_steps(len(stages), first_rung)
        else:
            stages, starts = [list(self.layers)], [0]
        self.stages = stages
        self._pending = list(zip(starts, stages))
        self._generator = torch.Generator().manual_seed(seed)
        self._labels = torch.tensor(data.labels)
        self.steps_done = 0
        if activation_bits < FLOAT_BITS:
            self._attach_due_stages()  # calibrate the activations on the weights as they train
            activations = quantize_activations(
                self.student,
                self.layers,
                spec.example_inputs(self.student),
                [(batch,) for batch in calibration_batches],
                activation_bits,
            )
            self.optimizer.add_param_group({"params": [step for quantizer in activations.values() for step in quantizer.parameters()]})

    @property
    def quantized_layers(self) -> list[str]:
        """Layers already behind a fake-quantizer (all of them once every MSFT stage has started)."""
        pending = {layer for _, stage in self._pending for layer in stage}
        return [layer for layer in self.layers if layer not in pending]

    def train_to(self, steps: int) -> None:
        """Fine-tune until `steps` optimiser steps are done in total (continuing, never restarting)."""
        if steps < self.steps_done:
            raise ValueError(f"cannot fine-tune back to {steps} steps: {self.steps_done} already done")
        while self.steps_done < steps:
            self._attach_due_stages()
            self._step()
        self._attach_due_stages()

    def compressed(self) -> CompressedModel:
        """The model as it would ship now: trained layers exported, layers not yet staged quantized post-training."""
        quantized = export_quantized(self.student)
        plain = without_fake_quantizers(self.student)
        for _, stage in self._pending:
            for name in stage:
                layer = self.layers[name]
                quantized[name] = get_quantizer(layer.quantizer).quantize(plain.get_submodule(name).weight, layer.bits)
        return finalize_compressed(self.spec, plain, quantized)

    def _attach_due_stages(self) -> None:
        while self._pending and self._pending[0][0] <= self.steps_done:
            _, stage = self._pending.pop(0)
            added = attach_fake_quantizers(
                self.student, {name: self.layers[name] for name in stage}, self.config.qat_options
            )
            if added:
                self.optimizer.add_param_group({"params": added})

    def _step(self) -> None:
        config = self.config
        crops, labels = sample_crops(
            self.data.features, self._labels, config.batch_size, config.crop_frames, self._generator
        )
        taps = config.distillation_taps
        with torch.no_grad():
            targets, teacher_taps = _outputs(self.teacher, crops, taps) if self.teacher is not None else (None, {})
        embeddings, student_taps = _outputs(self.student, crops, taps)
        loss = self.loss(embeddings, labels, targets)
        if taps and config.tap_weight:
            tap_losses = [relative_squared_error(student_taps[tap], teacher_taps[tap]) for tap in taps]
            loss = loss + config.tap_weight * torch.stack(tap_losses).mean()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"fine-tuning: non-finite loss {loss.item()} at step {self.steps_done}; lower fidelity.learning_rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm:
            parameters = [parameter for group in self.optimizer.param_groups for parameter in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        self.optimizer.step()
        self.steps_done += 1
        after_step(self.student, self.steps_done, self.steps_done / max(1, config.steps[-1]))


def _outputs(model: nn.Module, crops: torch.Tensor, taps: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The embeddings, and the taps when any are distilled (a plain forward pass otherwise)."""
    return model.forward_with_taps(crops) if taps else (model(crops), {})


__all__ = ["FineTuneData", "FineTuner"]
