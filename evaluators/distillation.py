"""Distillation losses: a student matches the named intermediate outputs ("taps") of a frozen teacher.

Liu, Sahidullah and Kinnunen (2023) distil x-vector knowledge at two levels, frame-level
outputs and utterance-level embeddings, separately or concatenated into one target; TinyWASE adds
the teacher's output as a second target beside the task loss. A tap of shape `[B, D]` is
utterance-level; `[B, C, T]` (or `[B, C, F, T]`, read as `[B, C*F, T]`) is frame-level.

- utterance-level: `1 - cosine` or the relative squared error `|s - t|^2 / |t|^2`;
- frame-level: per frame after resampling the student's time axis to the teacher's (linear
  interpolation; ResNet stages halve time, TDNN layers keep it), or on the pooled statistics
  (mean and standard deviation over time, which need no alignment); relative squared error;
- concatenation (mode "concat"): every tap reduced to a vector (frame-level taps to their
  statistics), each part L2-normalised so that no tap dominates by scale, concatenated into one
  target and matched with the utterance-level loss.

A learned projection (linear, or 1x1 convolution over frames) maps the student's width to the
teacher's where they differ, and nothing where they match, so a student equal to its teacher has
zero loss. Relative errors instead of plain MSE make one weight mean the same whatever the taps:
tap scales differ by orders of magnitude.

Each teacher tap is matched with the student tap at the same relative depth among the taps of
its level (same name when both have as many), so narrower, shallower or other-family students
work with the teacher's tap names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.plan import DistillationPlan

MODES = ("sum", "concat")
UTTERANCE_LOSSES = ("cosine", "relative_mse")
FRAME_LOSSES = ("frames", "statistics")

Taps = Mapping[str, torch.Tensor]


class DistillationError(ValueError):
    """Distillation that cannot be set up: unknown tap, mode or loss, negative weight."""


def check_distillation(plan: DistillationPlan, tap_names: Sequence[str]) -> None:
    """Raise a `DistillationError` naming the bad value when `plan` does not fit a teacher's taps."""
    if not plan.taps:
        raise DistillationError(f"distill.taps: empty; available taps: {list(tap_names)}")
    unknown = [tap for tap in plan.taps if tap not in tap_names]
    if unknown:
        raise DistillationError(f"distill.taps: unknown tap {unknown[0]!r}; available taps: {list(tap_names)}")
    if len(set(plan.taps)) != len(plan.taps):
        raise DistillationError(f"distill.taps={list(plan.taps)}: a tap is named twice")
    if plan.mode not in MODES:
        raise DistillationError(f"distill.mode={plan.mode!r}: expected one of {list(MODES)}")
    if not plan.weight >= 0:
        raise DistillationError(f"distill.weight={plan.weight!r}: must be >= 0")


def match_taps(teacher_taps: Taps, student_taps: Taps, names: Sequence[str]) -> dict[str, str]:
    """Teacher tap name -> the student tap at the same relative depth among the taps of its level."""
    matched = {}
    for name in names:
        teacher_level = _level_names(teacher_taps, _is_frame_level(teacher_taps[name]))
        student_level = _level_names(student_taps, _is_frame_level(teacher_taps[name]))
        if not student_level:
            level = "frame" if _is_frame_level(teacher_taps[name]) else "utterance"
            raise DistillationError(f"distill.taps: the student has no {level}-level tap to match {name!r}")
        position = teacher_level.index(name) / max(1, len(teacher_level) - 1)
        matched[name] = student_level[int(position * (len(student_level) - 1) + 0.5)]
    return matched


def relative_squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """`|s - t|^2 / |t|^2` over the whole batch: zero when equal, scale-free."""
    return (student - teacher).square().sum() / teacher.square().sum().clamp_min(1e-12)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean `1 - cosine` between matching rows (or frames: dimension 1 holds the features)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=1, eps=1e-8)).mean()


def frame_statistics(frames: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over time: `[B, C, T]` -> `[B, 2C]`."""
    return torch.cat([frames.mean(dim=-1), frames.var(dim=-1, unbiased=False).clamp_min(1e-5).sqrt()], dim=-1)


def align_time(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Resample `[B, C, T]` to `length` frames by linear interpolation (unchanged when equal)."""
    if frames.shape[-1] == length:
        return frames
    return F.interpolate(frames, size=length, mode="linear", align_corners=False)


class DistillationLoss(nn.Module):
    """The distillation term of one plan between one teacher and one student.

    Args:
        plan: Teacher taps, mode and weight (the weight is applied by the caller).
        teacher_taps, student_taps: Taps of one forward pass of each model; they fix the tap
            matching and the projection sizes.
        utterance_loss: "cosine" or "relative_mse", for utterance-level taps and "concat".
        frame_loss: "frames" (per-frame, time-aligned) or "statistics" (pooled).
    """

    def __init__(
        self,
        plan: DistillationPlan,
        teacher_taps: Taps,
        student_taps: Taps,
        utterance_loss: str = "cosine",
        frame_loss: str = "frames",
    ) -> None:
        super().__init__()
        check_distillation(plan, list(teacher_taps))
        if utterance_loss not in UTTERANCE_LOSSES:
            raise DistillationError(f"utterance_loss={utterance_loss!r}: expected one of {list(UTTERANCE_LOSSES)}")
        if frame_loss not in FRAME_LOSSES:
            raise DistillationError(f"frame_loss={frame_loss!r}: expected one of {list(FRAME_LOSSES)}")
        self.plan = plan
        self.matched = match_taps(teacher_taps, student_taps, plan.taps)
        self.utterance_loss = utterance_loss
        self.frame_loss = frame_loss
        self.projections = nn.ModuleDict()
        pairs = [(student_taps[self.matched[tap]], teacher_taps[tap]) for tap in plan.taps]
        if plan.mode == "concat":
            student_widths, teacher_widths = zip(*((_vector_width(s), _vector_width(t)) for s, t in pairs))
            same = student_widths == teacher_widths
            self.projections["concat"] = _projection(sum(student_widths), sum(teacher_widths), frames=False, same=same)
        else:
            for index, (student, teacher) in enumerate(pairs):
                widths = _width(student), _width(teacher)
                self.projections[str(index)] = _projection(*widths, _is_frame_level(teacher), widths[0] == widths[1])

    def forward(self, student_taps: Taps, teacher_taps: Taps) -> torch.Tensor:
        """The loss (before the plan's weight); gradients reach the student and the projections."""
        if self.plan.mode == "concat":
            student = torch.cat([_as_vector(student_taps[self.matched[tap]]) for tap in self.plan.taps], dim=1)
            teacher = torch.cat([_as_vector(teacher_taps[tap].detach()) for tap in self.plan.taps], dim=1)
            return self._utterance(self.projections["concat"](student), teacher)
        losses = [
            self._tap_loss(self.projections[str(index)], student_taps[self.matched[tap]], teacher_taps[tap].detach())
            for index, tap in enumerate(self.plan.taps)
        ]
        return torch.stack(losses).mean()

    def _tap_loss(self, projection: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if not _is_frame_level(teacher):
            return self._utterance(projection(student), teacher)
        student, teacher = projection(_as_frames(student)), _as_frames(teacher)
        if self.frame_loss == "statistics":
            return relative_squared_error(frame_statistics(student), frame_statistics(teacher))
        return relative_squared_error(align_time(student, teacher.shape[-1]), teacher)

    def _utterance(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.utterance_loss == "cosine":
            return cosine_distance(student, teacher)
        return relative_squared_error(student, teacher)


def _is_frame_level(tap: torch.Tensor) -> bool:
    return tap.dim() > 2


def _level_names(taps: Taps, frame_level: bool) -> list[str]:
    return [name for name, tap in taps.items() if _is_frame_level(tap) == frame_level]


def _as_frames(tap: torch.Tensor) -> torch.Tensor:
    """`[B, C, T]` as is; a 2-D feature map `[B, C, F, T]` as `[B, C*F, T]`."""
    return tap.flatten(1, -2) if tap.dim() > 3 else tap


def _as_vector(tap: torch.Tensor) -> torch.Tensor:
    """One L2-normalised vector per utterance: frame-level taps reduced to their statistics."""
    vector = frame_statistics(_as_frames(tap)) if _is_frame_level(tap) else tap
    return F.normalize(vector, dim=1)


def _width(tap: torch.Tensor) -> int:
    return _as_frames(tap).shape[1]


def _vector_width(tap: torch.Tensor) -> int:
    return 2 * _width(tap) if _is_frame_level(tap) else tap.shape[1]


def _projection(student_width: int, teacher_width: int, frames: bool, same: bool) -> nn.Module:
    """Identity when the student's features already have the teacher's layout, else a learned map."""
    if same:
        return nn.Identity()
    if frames:
        return nn.Conv1d(student_width, teacher_width, 1, bias=False)
    return nn.Linear(student_width, teacher_width, bias=False)


__all__ = [
    "FRAME_LOSSES",
    "MODES",
    "UTTERANCE_LOSSES",
    "DistillationError",
    "DistillationLoss",
    "align_time",
    "check_distillation",
    "cosine_distance",
    "frame_statistics",
    "match_taps",
    "relative_squared_error",
]
