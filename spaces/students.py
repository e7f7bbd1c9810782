"""Students: a model family at a width and depth multiplier of the teacher, to train by distillation.

Width scales the family's channel arguments and depth its block counts (rounded, at least the
family's minimum). The embedding size stays the teacher's: utterance-level distillation then needs
no projection and the student's embeddings are scored exactly like the teacher's. A student of
the teacher's family scales the teacher's arguments; a student of another family scales that
family's defaults (its full-size published model).

Initialisation: with `teacher_state`, every student tensor starts as the leading slice of the
teacher tensor of the same name (first output and input channels, first blocks of each stage,
batch-norm statistics included), what is left over random; without it, the family's random
initialisation. Slicing only exists between models of one family.

With `share`, the student's repeated blocks share weights (`spaces.sharing`); its spec builds
them tied, so every model rebuilt from it (quantization, packed-file loading) is tied too.

A plan quantizes the teacher's layer names; `student_layers` carries it over to the student
(block by relative depth, then by name; across families by position in forward order).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spaces.compress import ModelSpec, quantizable_layers
from spaces.models import MODEL_FAMILIES
from spaces.plan import LayerQuantization, StudentPlan
from spaces.sharing import share_repeated_blocks, shared_layers, shared_state_keys


class StudentError(ValueError):
    """A student that cannot be built (unknown family, non-positive multiplier, impossible slice)."""


@dataclass(frozen=True)
class _Scaling:
    """Which keyword arguments of a family the width and depth multipliers scale.

    Attributes:
        width_keys: Channel arguments multiplied by the width.
        depth_key: Block-count argument (an int or one int per stage) multiplied by the depth.
        min_depth: Smallest block count per stage the family accepts.
        multiple_of: Width argument -> the argument its value must be a multiple of.
    """

    width_keys: tuple[str, ...]
    depth_key: str
    min_depth: int = 1
    multiple_of: dict[str, str] = field(default_factory=dict)


_SCALING = {
    "resnet": _Scaling(width_keys=("base_width",), depth_key="blocks"),
    "ecapa_tdnn": _Scaling(
        width_keys=("channels", "se_channels", "attention_channels", "mfa_channels"),
        depth_key="blocks",
        multiple_of={"channels": "scale"},
    ),
    "xvector": _Scaling(width_keys=("channels", "pooling_channels"), depth_key="frame_layers", min_depth=2),
    "extractor": _Scaling(width_keys=("filters", "bottleneck", "hidden", "skip_channels"), depth_key="blocks"),
}


@dataclass(frozen=True)
class SharedModelSpec(ModelSpec):
    """A model spec whose repeated blocks are built with shared weights."""

    def build(self) -> nn.Module:
        model = super().build()
        share_repeated_blocks(model)
        return model


def student_spec(teacher: ModelSpec, student: StudentPlan, share: bool = False) -> ModelSpec:
    """The student's model spec: the teacher's input format, scaled family arguments.

    A family without scaling rules (the pretrained ones) has one student: its own architecture
    (width and depth 1, no sharing), the teacher's spec as it is, so it can be distilled into a
    quantized copy of itself.
    """
    own_architecture = student.family == teacher.family and student.width == student.depth == 1.0 and not share
    if student.family not in _SCALING and own_architecture:
        return teacher
    if student.family not in _SCALING:
        raise StudentError(f"student.family={student.family!r}: unknown family; available: {sorted(_SCALING)}")
    for key in ("width", "depth"):
        if not getattr(student, key) > 0:
            raise StudentError(f"student.{key}={getattr(student, key)!r}: must be > 0")
    scaling = _SCALING[student.family]
    base = _defaults(student.family)
    if student.family == teacher.family:
        base.update(teacher.kwargs)
    base.update(embedding_dim=_embedding_dim(teacher))
    if "num_mel_bins" in base:  # filterbank families; the extractor reads raw audio
        base.update(num_mel_bins=teacher.num_mel_bins)
    kwargs = dict(base)
    for key in scaling.width_keys:
        multiple = int(base[scaling.multiple_of[key]]) if key in scaling.multiple_of else 1
        kwargs[key] = multiple * max(1, _round(base[key] * student.width / multiple))
    blocks = base[scaling.depth_key]

    def scale_depth(count: int) -> int:
        return max(scaling.min_depth, _round(count * student.depth))

    kwargs[scaling.depth_key] = scale_depth(blocks) if isinstance(blocks, int) else tuple(map(scale_depth, blocks))
    spec_type = SharedModelSpec if share else ModelSpec
    return spec_type(
        student.family, kwargs, teacher.num_mel_bins, teacher.frames_per_second, teacher.sample_rate, teacher.side_bits
    )


def build_student(
    teacher: ModelSpec,
    student: StudentPlan,
    teacher_state: Mapping[str, torch.Tensor] | None = None,
    share: bool = False,
) -> tuple[ModelSpec, nn.Module]:
    """Build the student of `teacher` described by `student`.

    Args:
        teacher_state: The trained teacher's weights to slice the student from, or None for a
            random initialisation (seed torch beforehand for a reproducible one).
        share: Tie the weights of repeated blocks; a tied block keeps the first block's slice.

    Returns:
        The student's spec and the model.
    """
    spec = student_spec(teacher, student, share)
    model = spec.build()
    if teacher_state is not None:
        if student.family != teacher.family:
            raise StudentError(
                f"student.family={student.family!r}: cannot slice a {teacher.family!r} teacher into it; "
                "initialise it randomly"
            )
        _copy_leading_slices(model, teacher_state)
    return spec, model


def student_layers(
    layers: Mapping[str, LayerQuantization], teacher: nn.Module, student: nn.Module
) -> dict[str, LayerQuantization]:
    """The plan's per-layer quantization of the teacher's layers, carried over to `student`.

    A layer inside a repeated block takes the entry of the same layer in the teacher's block at
    the same relative depth (a shallow x-vector's last frame layer is quantized like the
    teacher's last one); any other layer the entry of the teacher layer of the same name, or,
    across families, of the teacher layer at the same relative position in forward order. A tied
    layer follows its owner.

    Args:
        layers: Quantization per teacher layer name (layers not named stay FP32).
    """
    teacher_names = quantizable_layers(teacher)
    names = quantizable_layers(student)
    carried = {}
    for index, name in enumerate(names):
        source = _counterpart(name, teacher, student, teacher_names)
        if source is None:
            source = teacher_names[_round(index / max(1, len(names) - 1) * (len(teacher_names) - 1))]
        if source in layers:
            carried[name] = layers[source]
    for alias, owner in shared_layers(student).items():
        carried.pop(alias, None)
        if owner in carried:
            carried[alias] = carried[owner]
    return carried


def _counterpart(name: str, teacher: nn.Module, student: nn.Module, teacher_names: Sequence[str]) -> str | None:
    """The teacher layer `name` corresponds to within one family (None across families)."""
    if type(teacher) is not type(student):
        return None
    for teacher_blocks, blocks in zip(_repeated_blocks(teacher), _repeated_blocks(student)):
        for position, block in enumerate(blocks):
            if name.startswith(f"{block}."):
                relative = position / max(1, len(blocks) - 1)
                counterpart = teacher_blocks[_round(relative * (len(teacher_blocks) - 1))] + name[len(block) :]
                if counterpart in teacher_names:
                    return counterpart
    return name if name in teacher_names else None


def _repeated_blocks(model: nn.Module) -> list[list[str]]:
    """The family's repeated blocks (`spaces.sharing`); none for a family that declares none (GE2E)."""
    declared = getattr(model, "repeated_blocks", None)
    return declared() if declared is not None else []


def _copy_leading_slices(model: nn.Module, source: Mapping[str, torch.Tensor]) -> None:
    """Overwrite the leading corner of every tensor with the same-named source tensor's corner."""
    tied = shared_state_keys(model)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            origin = source.get(key)
            if origin is None or origin.dim() != tensor.dim() or key in tied:
                continue
            corner = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, origin.shape))
            tensor[corner] = origin[corner].to(tensor.dtype)


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _defaults(family: str) -> dict[str, Any]:
    signature = inspect.signature(MODEL_FAMILIES[family])
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _embedding_dim(spec: ModelSpec) -> int:
    return int(spec.kwargs.get("embedding_dim", _defaults(spec.family)["embedding_dim"]))


__all__ = ["SharedModelSpec", "StudentError", "build_student", "student_layers", "student_spec"]
