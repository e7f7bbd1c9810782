"""A candidate compiled into what to build: the interface between the search space and evaluators.

The sampler's flat Candidate dict (knob -> value) is compiled by `SearchSpace.plan` into a
`CompressionPlan`; evaluators, fine-tuning and export read only the plan, never knob names, so
the space language can change without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from spaces.description import FLOAT_BITS
from spaces.quant import INTEGER_ACTIVATION_BITS, get_quantizer


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


def stored_quantizer(quantizer: str, bits: int, activation_bits: int) -> str:
    """The quantizer a `bits`-bit layer of `quantizer` is trained and stored with under `activation_bits`.

    Itself, except with `INTEGER_ACTIVATION_BITS` activations: then its `integer_kernel_variant`.
    The plan and the ILP's byte accounting (`evaluators.layer_quantization`) both ask here, so
    the bytes the ILP predicts are those of the layers the trial builds.
    """
    if activation_bits != INTEGER_ACTIVATION_BITS:
        return quantizer
    return get_quantizer(quantizer).integer_kernel_variant(bits)


@dataclass(frozen=True)
class CompressionPlan:
    """Everything a trial builds, as a pure function of its candidate.

    With `INTEGER_ACTIVATION_BITS` activations the candidate's layers will run on integer kernels,
    so each layer takes its quantizer's `integer_kernel_variant`: an 8-bit symmetric uniform layer
    trains on the kernels' range (`uniform` -> `uniform-reduced`, levels within ±64), and the
    exported model computes what the run measured (`spaces.quant.integer_kernels` says why).

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

    def __post_init__(self) -> None:
        layers = {
            name: replace(layer, quantizer=stored_quantizer(layer.quantizer, layer.bits, self.activation_bits))
            for name, layer in self.layers.items()
        }
        object.__setattr__(self, "layers", layers)  # frozen: the weight range is part of what the plan says

    @property
    def layer_bits(self) -> dict[str, int]:
        return {name: layer.bits for name, layer in self.layers.items()}

    @property
    def layer_quantizers(self) -> dict[str, str]:
        return {name: layer.quantizer for name, layer in self.layers.items()}
