"""Peak memory of one inference: the runtime's fixed cost, its weight copies, the activations it holds.

Peak memory is defined as it is measured (`hwcost.calibration.measure`): in a fresh process, the
resident-set high-water mark (VmHWM) after inference minus VmHWM after the runtime is imported
and the inputs exist, before the session is created; onnxruntime's CPU memory arena and memory
pattern are on, its defaults. So it counts

    peak = fixed_bytes                                  the session
         + kernel_type_bytes * distinct kernels         code pages and static buffers each kernel
                                                        type touches on first use
         + sum over weight-owning layers of copies[key] * resident weight bytes
         + activation_factor * largest activation set   one layer's input + output
         + live_factor * live activations               the layer outputs held at once in the
                                                        runtime's execution order
                                                        (`hwcost.liveness`), as the first run
                                                        allocates them tensor by tensor
         + pattern_factor * live activations beyond     the memory pattern's block: the second
           the arena's first region                     run allocates the live set as one block,
                                                        which the arena's free space holds only
                                                        up to about its first region; beyond it
                                                        the block takes a region of its own
         + decoded_factor * largest decoded weight      float weights decoded on a run

A layer's resident weight bytes are what its runtime keeps (`Runtime.resident_weight_bits`):
float weights, int8 codes, or the codes a DequantizeLinear decodes. `copies[key]` (per cost key of
its kernel) counts the copies a runtime holds or held while loading (a re-packed weight beside
the original, a folded one beside the codes). Uncalibrated, the runtime is taken to hold one copy
of each weight, one activation set and no fixed cost (`MemoryCoefficients()`); calibration fits
every term.

Works on plain data; never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from hwcost.liveness import live_bytes
from hwcost.runtimes import Lowering, Runtime

ARENA_FIRST_REGION_BYTES = 1 << 20
"""onnxruntime's CPU arena's first region (`BFCArena::DEFAULT_INITIAL_CHUNK_SIZE_BYTES`, 1 MiB)."""

MEMORY_TERMS = (
    "fixed_bytes", "kernel_type_bytes", "weight_copies", "activation_factor", "live_factor", "pattern_factor",
    "decoded_factor",
)  # fmt: skip
"""Keys of a profile's `measured.memory` section."""


@dataclass(frozen=True)
class MemoryCoefficients:
    """The fitted (or modelled) terms of the peak-memory model.

    Attributes:
        fixed_bytes: What a session costs before any weight or kernel.
        kernel_type_bytes: What each distinct kernel (cost key) adds: its code pages and static
            buffers, touched on first use.
        weight_copies: Cost key -> copies of a layer's resident weights held at the peak; keys not
            named hold `default_copies`.
        activation_factor: Held activations as a multiple of the largest layer input + output.
        live_factor: Held activations as a multiple of the layer outputs live at once.
        pattern_factor: Held activations as a multiple of the live outputs beyond the arena's
            first region (`ARENA_FIRST_REGION_BYTES`): the memory pattern's block.
        decoded_factor: Held decoded weights as a multiple of the largest per-run decoded weight.
        default_copies: Copies of weights whose key `weight_copies` does not name.
    """

    fixed_bytes: float = 0.0
    kernel_type_bytes: float = 0.0
    weight_copies: Mapping[str, float] = field(default_factory=dict)
    activation_factor: float = 1.0
    live_factor: float = 0.0
    pattern_factor: float = 0.0
    decoded_factor: float = 1.0
    default_copies: float = 1.0


@dataclass(frozen=True)
class PeakMemory:
    """Predicted peak memory and its terms, in bytes."""

    fixed_bytes: float
    weight_bytes: float
    activation_bytes: float
    decoded_bytes: float

    @property
    def total_bytes(self) -> int:
        return math.ceil(self.fixed_bytes + self.weight_bytes + self.activation_bytes + self.decoded_bytes)


@dataclass(frozen=True)
class MemoryFeatures:
    """The figures peak memory is linear in.

    Attributes:
        kernel_types: Distinct kernels (cost keys) the inference runs.
        weights: Resident weight bytes per cost key (shared weights once, with their owner).
        activations: Bytes of the largest layer input + output.
        live: Most bytes of layer outputs held at once (`hwcost.liveness.live_bytes`).
        decoded: Bytes of the largest weight decoded on a run.
    """

    kernel_types: int
    weights: Mapping[str, float]
    activations: float
    live: float
    decoded: float

    @property
    def live_beyond_first_region(self) -> float:
        """Live bytes beyond the arena's first region: what the memory pattern's block holds again."""
        return max(0.0, self.live - ARENA_FIRST_REGION_BYTES)


def memory_features(lowering: Lowering, runtime: Runtime) -> MemoryFeatures:
    """What one inference of a lowered description holds, in the terms of the peak-memory model."""
    weights: dict[str, float] = {}
    largest_activations = 0.0
    largest_decoded = 0.0
    for lowered in lowering.layers:
        layer = lowered.layer
        for kernel in lowered.kernels:
            executed = kernel.layer
            if executed is not None:
                activations = (executed.input_elements_per_second + executed.output_elements_per_second)
                largest_activations = max(largest_activations, math.ceil(activations * executed.activation_bits / 8))
        if not layer.shared_with and (layer.params or layer.extra_params):
            key = lowered.kernels[-1].key if lowered.kernels else f"{layer.kind}/{lowered.variant}"
            weights[key] = weights.get(key, 0.0) + runtime.resident_weight_bits(lowered) / 8
        largest_decoded = max(largest_decoded, runtime.decoded_weight_bits(lowered) / 8)
    kernels = [kernel for lowered in lowering.layers for kernel in lowered.kernels] + list(lowering.fixed)
    kernel_types = {kernel.key for kernel in kernels}
    return MemoryFeatures(len(kernel_types), weights, largest_activations, live_bytes(lowering), largest_decoded)


def peak_memory(lowering: Lowering, runtime: Runtime, coefficients: MemoryCoefficients) -> PeakMemory:
    """Peak memory of one inference of a lowered description under `coefficients`."""
    features = memory_features(lowering, runtime)
    copies = coefficients.weight_copies
    weight_bytes = sum(copies.get(key, coefficients.default_copies) * value for key, value in features.weights.items())
    return PeakMemory(
        fixed_bytes=coefficients.fixed_bytes + coefficients.kernel_type_bytes * features.kernel_types,
        weight_bytes=weight_bytes,
        activation_bytes=coefficients.activation_factor * features.activations
        + coefficients.live_factor * features.live
        + coefficients.pattern_factor * features.live_beyond_first_region,
        decoded_bytes=coefficients.decoded_factor * features.decoded,
    )


__all__ = [
    "ARENA_FIRST_REGION_BYTES",
    "MEMORY_TERMS",
    "MemoryCoefficients",
    "MemoryFeatures",
    "PeakMemory",
    "memory_features",
    "peak_memory",
]
