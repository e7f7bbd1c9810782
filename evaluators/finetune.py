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
(`evaluators.finetune_loss`). What chose the defaults, measured on the demo teacher
(`configs/demo.yaml`, FP32 EER 7.31%; 150 steps, batch 32, 150-frame crops, Adam; EER % of
single runs, whose bootstrap 95% interval is about +-0.5 points):

| every layer at | PTQ | distillation 0 | 1 | 5 | 20 |
| --- | --- | --- | --- | --- | --- |
| uniform 2-bit (LSQ) | 33.01 | 8.74 | 9.88 | 8.42 | 9.08 |
| k-means 2-bit (re-assigned every 10 steps) | 19.78 | 11.16 | 11.21 | 9.99 | 12.61 |
| uniform 3-bit (LSQ) | 10.05 | 7.22 | | 7.21 | |

Uniform 2-bit at distillation 1: learning rate 3e-4 gave 9.58, 3e-3 gave 12.57, and batch-norm
statistics frozen at the teacher's 10.35 (so batch norm trains, re-estimating its statistics for
the quantized weights). K-means 2-bit at distillation 5: re-assigning codes every step 8.17 (the
default) against 9.99 every 10 steps, and TinyWASE's soft-step 7.33.

Everything is seeded: the same candidate, data and seed give the same model on the same machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from evaluators.finetune_data import FineTuneData, sample_crops
from evaluators.finetune_loss import FineTuneLoss
from evaluators.msft import MSFT_ORDERS, msft_stages, stage_start_steps
from evaluators.training import TrainingError
from spaces.compress import CompressedModel, ModelSpec, finalize_compressed
from spaces.plan import LayerQuantization
from spaces.quant import QUANTIZERS, get_quantizer
from spaces.quant.qat import QatOptions, after_step, attach_fake_quantizers, export_quantized, without_fake_quantizers


@dataclass(frozen=True)
class FidelityConfig:
    """The `fidelity:` block: how much fine-tuning a candidate gets, and how.

    Attributes:
        steps: Ladder of cumulative fine-tuning budgets, strictly increasing; 0 is PTQ only. A
            candidate is measured after each rung; its final metrics are the last rung's.
        learning_rate: Adam learning rate (constant, so a rung's result does not depend on later rungs).
        batch_size: Crops per step.
        crop_frames: Frames per training crop.
        distillation_weight: Weight of the cosine distance to the teacher's embedding.
        margin, scale: AAM-softmax margin (radians) and logit scale.
        reassign_every: Steps between k-means code re-assignments.
        soft_step: K-means layers train through TinyWASE's annealed soft-step.
        temperature_start, temperature_end: Soft-step temperature range, annealed over the ladder.
        msft: Quantize layer groups progressively over the first positive rung (MSFT).
        msft_order: "sensitivity" (least sensitive group first), "forward" or "backward".
        sensitivity_quantizer, sensitivity_bits: How each layer is quantized to measure its sensitivity.
        sensitivity_crops: Training crops the sensitivities are measured on.
    """

    steps: tuple[int, ...] = (0,)
    learning_rate: float = 1e-3
    batch_size: int = 32
    crop_frames: int = 150
    distillation_weight: float = 5.0
    margin: float = 0.2
    scale: float = 30.0
    reassign_every: int = 1
    soft_step: bool = False
    temperature_start: float = 0.5
    temperature_end: float = 0.01
    msft: bool = False
    msft_order: str = "sensitivity"
    sensitivity_quantizer: str = "uniform"
    sensitivity_bits: int = 3
    sensitivity_crops: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.steps, (tuple, list)) or not self.steps:
            raise ValueError(f"fidelity.steps={self.steps!r}: expected a non-empty list of step counts, e.g. [0, 200]")
        object.__setattr__(self, "steps", tuple(self.steps))
        if any(not isinstance(step, int) or isinstance(step, bool) or step < 0 for step in self.steps):
            raise ValueError(f"fidelity.steps={list(self.steps)}: step counts must be integers >= 0")
        if any(later <= earlier for earlier, later in zip(self.steps, self.steps[1:])):
            raise ValueError(f"fidelity.steps={list(self.steps)}: must be strictly increasing (cumulative budgets)")
        for key in ("batch_size", "crop_frames", "reassign_every", "sensitivity_crops"):
            if getattr(self, key) < 1:
                raise ValueError(f"fidelity.{key}={getattr(self, key)}: must be >= 1")
        for key in ("learning_rate", "scale"):
            if getattr(self, key) <= 0:
                raise ValueError(f"fidelity.{key}={getattr(self, key)}: must be > 0")
        for key in ("distillation_weight", "margin"):
            if getattr(self, key) < 0:
                raise ValueError(f"fidelity.{key}={getattr(self, key)}: must be >= 0")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError(
                f"fidelity.temperature_end={self.temperature_end}: need 0 < temperature_end <= temperature_start"
            )
        if self.msft_order not in MSFT_ORDERS:
            raise ValueError(f"fidelity.msft_order={self.msft_order!r}: expected one of {list(MSFT_ORDERS)}")
        if self.sensitivity_quantizer not in QUANTIZERS:
            raise ValueError(
                f"fidelity.sensitivity_quantizer={self.sensitivity_quantizer!r}: unknown; available: {sorted(QUANTIZERS)}"
            )
        allowed = QUANTIZERS[self.sensitivity_quantizer].allowed_bits
        if self.sensitivity_bits not in allowed:
            raise ValueError(
                f"fidelity.sensitivity_bits={self.sensitivity_bits}: not supported by "
                f"{self.sensitivity_quantizer!r}; allowed: {list(allowed)}"
            )

    @property
    def trains(self) -> bool:
        """Whether any rung fine-tunes (otherwise every candidate is post-training quantized)."""
        return self.steps[-1] > 0

    @property
    def qat_options(self) -> QatOptions:
        return QatOptions(self.reassign_every, self.soft_step, self.temperature_start, self.temperature_end)


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
    """

    def __init__(
        self,
        spec: ModelSpec,
        teacher_state: Mapping[str, torch.Tensor],
        layers: Mapping[str, LayerQuantization],
        data: FineTuneData,
        config: FidelityConfig,
        seed: int,
        sensitivities: Mapping[str, float] | None = None,
    ) -> None:
        self.spec, self.layers, self.data, self.config = spec, dict(layers), data, config
        self.student = spec.build()
        self.student.load_state_dict(teacher_state)
        self.student.train()
        self.teacher = None
        if config.distillation_weight:
            self.teacher = spec.build()
            self.teacher.load_state_dict(teacher_state)
            self.teacher.eval().requires_grad_(False)
        self.loss = FineTuneLoss(data.centroids, config.margin, config.scale, config.distillation_weight)
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
        with torch.no_grad():
            targets = self.teacher(crops) if self.teacher is not None else None
        loss = self.loss(self.student(crops), labels, targets)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"fine-tuning: non-finite loss {loss.item()} at step {self.steps_done}; lower fidelity.learning_rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        after_step(self.student, self.steps_done, self.steps_done / max(1, config.steps[-1]))


__all__ = ["FidelityConfig", "FineTuneData", "FineTuner"]
