"""A candidate compiled into what to build: the interface between the search space and evaluators.

The sampler's flat Candidate dict (knob -> value) is compiled by `SearchSpace.plan` into a
`CompressionPlan`; evaluators, fine-tuning and export read only the plan, never knob names, so
the space language can change without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spaces.description import FLOAT_BITS


@dataclass(frozen=True)
class LayerQuantization:
    """How one quantizable layer's weights are stored: bits per weight and the quantizer family."""

    bits: int
    quantizer: str = "uniform"


@dataclass(frozen=True)
class StudentPlan:
    """A student model searched instead of compressing the teacher itself.

    Attributes:
        family: Model family name (registry key).
        width: Width multiplier relative to the teacher's channel widths.
        depth: Depth multiplier (blocks per stage / layers), relative to the teacher.
    """

    family: str
    width: float = 1.0
    depth: float = 1.0


@dataclass(frozen=True)
class DistillationPlan:
    """Which teacher taps a student matches, and how strongly.

    Attributes:
        taps: Tap names of the teacher (e.g. "frame.block2", "stats", "embedding").
        weight: Lambda of the distillation loss beside the task loss.
        mode: "sum" adds one loss per tap; "concat" matches the taps concatenated as one target.
    """

    taps: tuple[str, ...]
    weight: float = 1.0
    mode: str = "sum"


@dataclass(frozen=True)
class CompressionPlan:
    """Everything a trial builds, as a pure function of its candidate.

    Attributes:
        layers: Quantization per quantizable layer name; layers not named stay FP32.
        activation_bits: Bits of fake-quantized activations (32 = FP32 activations).
        student: The student to train, or None to compress the teacher itself.
        distillation: Distillation targets, or None.
        share: Repeated blocks share one set of weights.
    """

    layers: dict[str, LayerQuantization] = field(default_factory=dict)
    activation_bits: int = FLOAT_BITS
    student: StudentPlan | None = None
    distillation: DistillationPlan | None = None
    share: bool = False

    @property
    def layer_bits(self) -> dict[str, int]:
        return {name: layer.bits for name, layer in self.layers.items()}

    @property
    def layer_quantizers(self) -> dict[str, str]:
        return {name: layer.quantizer for name, layer in self.layers.items()}
