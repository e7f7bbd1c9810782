"""Train a target-speaker extractor on random two-speaker mixtures, and run it on a test set.

The loss is negative SI-SDR of the estimate plus weighted extra terms (`LossTerms`): the binary
cross-entropy of the activity cue against where the target actually sounds (WASE's "when to
attend" signal), a speaker-classification loss on the voiceprint while the teacher trains, and for
distillation (TinyWASE) the negative SI-SDR between the student's and the FP32 teacher's
estimates of the same batch.

The teacher's schedule is Adam with a linear warm-up over the first 5% of steps, a cosine decay to
zero (a fixed step budget ends at a low rate) and gradient-norm clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data.mixtures import Mixture, MixtureBatch, MixtureConfig, SpeakerPool, training_batch
from evaluators.data.mixture_corpora import MixtureSource
from evaluators.si_sdr import negative_si_sdr, sdr_improvement, si_sdr_improvement
from evaluators.training import TrainingError

_WARMUP_FRACTION = 0.05
_ACTIVE_BELOW_PEAK_DB = 30.0
"""A frame is active when its energy is within this many dB of the target's loudest frame."""


@dataclass(frozen=True)
class ExtractorTrainingConfig:
    """The `teacher:` block of an extraction run: how the FP32 extractor is trained.

    Attributes:
        steps: Optimiser steps (the budget).
        batch_size: Mixtures per step.
        learning_rate: Peak Adam learning rate.
        clip_norm: Gradient-norm clipping threshold.
        cue_weight: Weight of the activity-cue loss beside the SI-SDR loss.
        speaker_weight: Weight of a speaker-classification loss on the voiceprint (through a
            training-only linear head; pools of speakers only), which teaches the voiceprint
            branch who is who much faster than the extraction loss alone (as in SpEx+).
    """

    steps: int = 600
    batch_size: int = 8
    learning_rate: float = 3e-3
    clip_norm: float = 5.0
    cue_weight: float = 0.1
    speaker_weight: float = 0.5

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"teacher.{key}={getattr(self, key)}: must be >= 1")
        for key in ("learning_rate", "clip_norm"):
            if getattr(self, key) <= 0:
                raise ValueError(f"teacher.{key}={getattr(self, key)}: must be > 0")
        for key in ("cue_weight", "speaker_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"teacher.{key}={getattr(self, key)}: must be >= 0")


def target_activity(target: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """1.0 for the encoder frames `[B, frames]` where the target sounds, else 0.0.

    Frames are the extractor's (zero-padded last window); active means within
    `_ACTIVE_BELOW_PEAK_DB` of the utterance's loudest frame.
    """
    frames = -(-max(target.shape[-1] - window, 0) // stride) + 1
    padded = F.pad(target, (0, (frames - 1) * stride + window - target.shape[-1]))
    energy = padded.unfold(-1, window, stride).square().mean(dim=-1)
    peak = energy.amax(dim=-1, keepdim=True)
    return (energy > peak * 10.0 ** (-_ACTIVE_BELOW_PEAK_DB / 10.0)).float()


@dataclass
class LossTerms:
    """The terms beside negative SI-SDR, with the modules they need (weights 0 leave a term out).

    Attributes:
        cue_weight: Binary cross-entropy of the activity cue against where the target sounds.
        teacher: FP32 model (in eval mode) whose estimate the model also matches, or None.
        distill_weight: Lambda of negative SI-SDR to the teacher's estimate (output distillation).
        speaker_head: Training-only linear classifier over the pool's speakers, or None.
        speaker_weight: Weight of the speaker cross-entropy of the voiceprint.
    """

    cue_weight: float = 0.0
    teacher: nn.Module | None = None
    distill_weight: float = 0.0
    speaker_head: nn.Module | None = None
    speaker_weight: float = 0.0


def extraction_loss(model: nn.Module, batch: MixtureBatch, terms: LossTerms) -> torch.Tensor:
    """Negative SI-SDR of the estimate plus the weighted extra terms."""
    estimate, taps = model.forward_with_taps(batch.mixture, batch.enrollment)
    loss = negative_si_sdr(estimate, batch.target)
    if terms.cue_weight:
        activity = target_activity(batch.target, model.window, model.stride)
        loss = loss + terms.cue_weight * F.binary_cross_entropy_with_logits(taps["activity"], activity)
    if terms.teacher is not None and terms.distill_weight:
        with torch.no_grad():
            teacher_estimate = terms.teacher(batch.mixture, batch.enrollment)
        loss = loss + terms.distill_weight * negative_si_sdr(estimate, teacher_estimate)
    if terms.speaker_head is not None and terms.speaker_weight and (batch.speaker >= 0).any():
        logits = terms.speaker_head(taps["voiceprint"])
        loss = loss + terms.speaker_weight * F.cross_entropy(logits, batch.speaker, ignore_index=-1)
    return loss


def train_extractor(
    model: nn.Module,
    source: MixtureSource,
    mixtures: MixtureConfig,
    sample_rate: int,
    config: ExtractorTrainingConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> None:
    """Train `model` in place from its current weights on random mixtures from `source`.

    Args:
        mixtures: Segment lengths and level range of the training mixtures.
        on_step: Called with (step, loss) after every step (progress display).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    segment, enrollment = segment_samples(mixtures, sample_rate)
    terms = LossTerms(cue_weight=config.cue_weight)
    if isinstance(source, SpeakerPool) and config.speaker_weight:
        terms.speaker_head = nn.Linear(model.voiceprint.embedding.out_features, len(source.speakers))
        terms.speaker_weight = config.speaker_weight
    parameters = [*model.parameters(), *(terms.speaker_head.parameters() if terms.speaker_head else ())]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _learning_rate_factor(step, config.steps))
    model.train()
    for step in range(config.steps):
        batch = training_batch(source, rng, config.batch_size, segment, enrollment, mixtures.level_db)
        loss = training_step(model, batch, optimizer, terms, config.clip_norm)
        if not math.isfinite(loss):
            raise TrainingError(f"non-finite loss {loss} at step {step}; lower teacher.learning_rate")
        schedule.step()
        if on_step is not None:
            on_step(step, loss)
    model.eval()


def training_step(
    model: nn.Module, batch: MixtureBatch, optimizer: torch.optim.Optimizer, terms: LossTerms, clip_norm: float
) -> float:
    """One optimiser step on `batch` with the optimiser's gradients clipped to `clip_norm`;
    returns the loss (a non-finite loss is not applied)."""
    loss = extraction_loss(model, batch, terms)
    if not torch.isfinite(loss):
        return loss.item()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_norm)
    optimizer.step()
    return loss.item()


def segment_samples(mixtures: MixtureConfig, sample_rate: int) -> tuple[int, int]:
    """Samples of a training mixture and of its enrollment crop."""
    return round(mixtures.segment_seconds * sample_rate), round(mixtures.enrollment_seconds * sample_rate)


@torch.inference_mode()
def extract(model: nn.Module, mixtures: Sequence[Mixture]) -> list[torch.Tensor]:
    """The model's estimate of each mixture's target, one forward pass each (lengths differ)."""
    model.eval()
    return [
        model(torch.from_numpy(m.mixture).unsqueeze(0), torch.from_numpy(m.enrollment).unsqueeze(0)).squeeze(0)
        for m in mixtures
    ]


def extraction_metrics(model: nn.Module, mixtures: Sequence[Mixture]) -> dict[str, float]:
    """Mean SI-SDRi and SDRi (dB) of the model over the mixtures."""
    improvements = {"si_sdri": [], "sdri": []}
    for example, estimate in zip(mixtures, extract(model, mixtures)):
        mixture, target = torch.from_numpy(example.mixture), torch.from_numpy(example.target)
        improvements["si_sdri"].append(si_sdr_improvement(estimate, mixture, target).item())
        improvements["sdri"].append(sdr_improvement(estimate, mixture, target).item())
    metrics = {key: float(np.mean(values)) for key, values in improvements.items()}
    if not all(math.isfinite(value) for value in metrics.values()):
        raise FloatingPointError(f"extractor produced non-finite metrics {metrics}")
    return metrics


def _learning_rate_factor(step: int, steps: int) -> float:
    warmup = max(1, round(_WARMUP_FRACTION * steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
