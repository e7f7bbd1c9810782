"""The knobs of a run mapped to Optuna distributions, and a sampled Candidate mapped to layer bits.

A Candidate is the flat JSON dict the sampler proposed (`{"bits.layer1": 4, ...}`); everything
downstream is a pure function of it, so it is all a trial needs to be re-run or exported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spaces.description import FLOAT_BITS
from spaces.plan import CompressionPlan, LayerQuantization
from spaces.quant import QUANTIZERS, SUPPORTED_WEIGHT_BITS

Candidate = dict[str, Any]
"""Exactly what the sampler proposed: knob name -> JSON value."""

GRANULARITIES = ("stage", "layer")


class SpaceError(ValueError):
    """A search space that cannot be built (bad bit width, unknown granularity or quantizer)."""


@dataclass(frozen=True)
class SpaceConfig:
    """The `space:` block of a run config.

    Attributes:
        bits: Bit widths each knob may take (32 keeps FP32).
        granularity: "stage" gives one knob per model stage, "layer" one per quantizable layer.
        quantizer: Weight quantizer family of the quantized layers.
        baselines: Uniform bit widths evaluated first, as reference points on the front.
    """

    bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8, FLOAT_BITS)
    granularity: str = "stage"
    quantizer: str = "uniform"
    baselines: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", tuple(self.bits))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        if not self.bits:
            raise SpaceError("space.bits: empty choice list")
        for key, values in (("bits", self.bits), ("baselines", self.baselines)):
            bad = [bits for bits in values if bits not in SUPPORTED_WEIGHT_BITS]
            if bad:
                raise SpaceError(f"space.{key}: impossible bit width {bad[0]!r}; allowed: {list(SUPPORTED_WEIGHT_BITS)}")
        if self.granularity not in GRANULARITIES:
            raise SpaceError(f"space.granularity={self.granularity!r}: expected one of {list(GRANULARITIES)}")
        if self.quantizer not in QUANTIZERS:
            raise SpaceError(f"space.quantizer={self.quantizer!r}: unknown; available: {sorted(QUANTIZERS)}")
        allowed = (*QUANTIZERS[self.quantizer].allowed_bits, FLOAT_BITS)
        for key, values in (("bits", self.bits), ("baselines", self.baselines)):
            bad = [bits for bits in values if bits not in allowed]
            if bad:
                raise SpaceError(
                    f"space.{key}: {bad[0]} bits not supported by quantizer {self.quantizer!r}; allowed: {list(allowed)}"
                )


class SearchSpace:
    """Per-group weight bit widths over a model's quantizable layers.

    Args:
        config: The validated `space:` block.
        layer_groups: Quantizable layer names grouped by stage, from the model family.
    """

    def __init__(self, config: SpaceConfig, layer_groups: Mapping[str, Sequence[str]]) -> None:
        self.config = config
        if config.granularity == "layer":
            layer_groups = {layer: [layer] for layers in layer_groups.values() for layer in layers}
        self.groups = {f"bits.{group}": list(layers) for group, layers in layer_groups.items()}

    @property
    def knobs(self) -> dict[str, tuple[int, ...]]:
        """Knob name -> choices."""
        return {name: self.config.bits for name in self.groups}

    @property
    def size(self) -> int:
        """Number of distinct candidates."""
        return math.prod(len(choices) for choices in self.knobs.values())

    def suggest(self, trial: Any) -> None:
        """Define-by-run function for Optuna / OptunaSearch: one categorical per knob."""
        for name, choices in self.knobs.items():
            trial.suggest_categorical(name, list(choices))

    def uniform_candidate(self, bits: int) -> Candidate:
        """The candidate with every knob at `bits` (a seed baseline)."""
        return {name: bits for name in self.groups}

    def layer_bits(self, candidate: Mapping[str, Any]) -> dict[str, int]:
        """Bits per quantizable layer; a missing or unknown knob is a clear error."""
        missing = sorted(set(self.groups) - set(candidate))
        unknown = sorted(set(candidate) - set(self.groups))
        if missing or unknown:
            raise SpaceError(f"candidate does not match the space: missing {missing}, unknown {unknown}")
        bits_per_layer = {}
        for name, layers in self.groups.items():
            bits = int(candidate[name])
            if bits not in self.config.bits:
                raise SpaceError(f"candidate {name}={bits}: not among the choices {list(self.config.bits)}")
            bits_per_layer.update({layer: bits for layer in layers})
        return bits_per_layer

    def plan(self, candidate: Mapping[str, Any]) -> CompressionPlan:
        """What the candidate builds: quantization per layer (FP32 layers left out)."""
        return CompressionPlan(
            layers={
                layer: LayerQuantization(bits, self.config.quantizer)
                for layer, bits in self.layer_bits(candidate).items()
                if bits != FLOAT_BITS
            }
        )
