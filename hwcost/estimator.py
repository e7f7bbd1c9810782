"""Cost of a `ModelDescription` on a target (a CPU profile plus a runtime), for one second of audio.

The target's runtime (`hwcost.runtimes`) lowers the description to the kernels it really runs. A
kernel whose cost key the profile has calibrated (`measured.kernels`) costs the dot product of
its features with the fitted coefficients (`hwcost.kernels`); any other is priced by the
roofline below, with the bits the runtime runs it at (a layer kept in float by the runtime is
priced as float, whatever its stored bits). Peak memory is `hwcost.memory`'s model.

The roofline. One second of audio is priced as one inference: every layer reads its weights and its input,
writes its output and pays a fixed dispatch overhead once. Per layer:

    compute  = MACs / (macs_per_cycle[class] * efficiency[class] * clock * cores)
               + packed weights * unpack_cycles_per_weight * weight_passes / (clock * cores)
    traffic  = weight bytes * weight_passes + (input + output elements) * activation_bits / 8
    memory   = traffic / dram_bandwidth
    latency  = max(compute, memory) + per_layer_overhead

Cache rule: weights that fit in the last-level cache (L3, or L2 when there is no L3) come from
DRAM once (`weight_passes` = 1). Larger weights are streamed past tiles of output activations,
each tile sized to L1, so they are re-read (and, when packed, re-unpacked) once per tile:
`weight_passes` = ceil(output bytes / L1 bytes). Weights are not assumed to stay cached from
one second of audio to the next.

Recurrent layers (kind "lstm", a whole `nn.LSTM`, or "lstm_recurrent", one layer's recurrent
matrix of a `QuantizableLSTM`) run `sequential_steps_per_second` dependent steps, each a
matrix-vector product per gate matrix (no batch of frames to share a weight load across):

    compute  = MACs / (macs_per_cycle[class] * efficiency[class] * GEMV_EFFICIENCY * clock * cores)
               + packed weights * unpack_cycles_per_weight * weight_passes / (clock * cores)
    weight_passes = 1 when the weights fit in the last-level cache, else ceil(steps): every step
               reads the full gate matrices, so weights beyond the cache come from DRAM each step
               (and packed ones are unpacked again each step)
    latency  = max(compute, memory) + per_layer_overhead
               + steps * per_layer_overhead * STEP_OVERHEAD_FRACTION

GEMV_EFFICIENCY (0.5) is modelled: a matrix-vector product loads every weight for a single
multiply-accumulate, so it gets none of the register reuse a GEMM kernel's efficiency assumes.
The per-step term (one tenth of a layer dispatch per step) is modelled too: the loop, gate
nonlinearities and state hand-off between steps. Traffic, memory and passes follow the cache rule
above with steps in place of output tiles. For a stacked `nn.LSTM` the description holds one layer,
so each step is priced as reading all layers' weights: an upper bound when they exceed the cache.
An LSTM with no recorded steps (0) is priced as one pass with no per-step overhead. An LSTM
layer's input matrix ("lstm_input") multiplies all frames at once, so it is priced like a
linear layer.

Parameter-free layers (norms, activations, pooling, elementwise) do `_OPS_PER_ELEMENT[kind]`
fp32 operations per element of the larger of input and output, at one vector instruction of
simd_width_bits / 32 lanes per cycle. Kernels a runtime adds are priced the same way, each with a
layer's dispatch overhead: a quantize or dequantize does one operation per element, a per-run weight decode
(DequantizeLinear) `DECODE_OPS_PER_WEIGHT` per weight; the fixed work of an inference is not
modelled (zero) until calibrated.

This module works on plain data and never imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hwcost.kernels import ELEMENTWISE_CLASS, CostModelError, Kernel, priced_features
from hwcost.memory import PeakMemory, peak_memory
from hwcost.profile import TargetProfile, load_target
from hwcost.runtimes import DEFAULT_RUNTIME, FLOAT_DECODED, LoweredLayer, get_runtime
from spaces.description import FLOAT_BITS, LayerDescription, ModelDescription

DECODE_OPS_PER_WEIGHT = 2.0
"""modelled: a DequantizeLinear subtracts the zero point and multiplies by the scale per weight."""

NANOSECONDS_PER_MS = 1e6
"""Calibrated coefficients are nanoseconds per feature unit (`hwcost.kernels`)."""

FITTED = "fitted"
"""`LayerCost.bound` of a kernel priced by calibrated coefficients."""

FUSED = "fused"
"""`LayerCost.bound` of a layer the runtime runs inside the kernel before it."""

_MAC_KINDS = frozenset(
    {"conv1d", "conv2d", "depthwise_conv", "conv_transpose1d", "linear", "lstm", "lstm_input", "lstm_recurrent"}
)

_SEQUENTIAL_KINDS = frozenset({"lstm", "lstm_recurrent"})
"""MAC kinds run as one matrix-vector product per dependent time step."""

GEMV_EFFICIENCY = 0.5
"""modelled: fraction of a kernel class's sustained MAC rate a matrix-vector product reaches."""

STEP_OVERHEAD_FRACTION = 0.1
"""modelled: overhead of one sequential step, as a fraction of `per_layer_overhead_us`."""

_OPS_PER_ELEMENT = {
    "batchnorm": 1.0,  # folded scale and shift: one FMA per element
    "groupnorm": 4.0,  # mean, variance, normalise, affine
    "layernorm": 4.0,  # mean, variance, normalise, affine
    "activation": 2.0,  # ReLU is one op, PReLU / sigmoid-like ones more: modelled at two
    "pooling": 2.0,  # statistics pooling: sum and sum of squares per input element
    "elementwise": 1.0,  # residual add or gating multiply
    "layout": 1.0,  # a transpose: one strided copy per element
}

_PACKED_CLASSES = frozenset({"lowbit", "lookup"})


@dataclass(frozen=True)
class LayerCost:
    """Predicted cost of one layer for one second of audio.

    Attributes:
        name: Layer name from the description.
        kind: Layer kind from the description.
        kernel_class: How it runs: under the packed-kernel runtime its kernel family (a
            `KERNEL_CLASSES` entry or "elementwise"), under another runtime its variant
            ("fp32", "fp32-decoded", "int8").
        macs: Multiply-accumulates per second of audio.
        compute_ms: Time the arithmetic (and weight unpacking) needs; the whole fitted time of
            a calibrated kernel.
        memory_ms: Time its DRAM traffic needs (0 for a calibrated kernel).
        latency_ms: max(compute_ms, memory_ms) plus the per-layer overhead (and, for recurrent
            layers, the per-step overhead), plus any kernel the runtime adds before it; the
            fitted time of a calibrated kernel; 0 when fused.
        bound: "compute" or "memory", whichever of the two is larger; "fitted" when calibrated;
            "fused" when it runs inside the kernel before it.
        weight_bytes: Bytes of weights, side data and FP32 extras the layer reads per pass.
        traffic_bytes: DRAM bytes moved, weight re-reads included.
    """

    name: str
    kind: str
    kernel_class: str
    macs: float
    compute_ms: float
    memory_ms: float
    latency_ms: float
    bound: str
    weight_bytes: int
    traffic_bytes: float


@dataclass(frozen=True)
class CostEstimate:
    """Predicted cost of a whole model on one target, for one second of audio.

    Attributes:
        target: Target profile name.
        latency_ms: Sum of layer latencies, plus the fixed work of one inference, for one second
            of input audio.
        real_time_factor: latency_ms / 1000; below 1 keeps up with live audio.
        storage_bytes: Packed weights file size (`description.size_bytes`), or the stored weight
            bits rounded up to bytes when the model is not packed yet.
        peak_memory_bytes: `hwcost.memory`'s peak: uncalibrated, the weights the runtime keeps
            plus the largest live activation set (one layer's input and output for one second
            of audio). No workspace is added: 1-D convolutions run as direct kernels and packed
            weights are unpacked panel by panel into L1-sized buffers.
        layers: Per-layer costs in execution order.
        runtime: The runtime the target prices.
        fixed_ms: The work of one inference outside its layers: the call's own and, where an int8
            kernel writes the graph's output, its dequantize (in `latency_ms`, in no layer).
        memory: The terms of `peak_memory_bytes`.
    """

    target: str
    latency_ms: float
    real_time_factor: float
    storage_bytes: int
    peak_memory_bytes: int
    layers: tuple[LayerCost, ...]
    runtime: str = DEFAULT_RUNTIME
    fixed_ms: float = 0.0
    memory: PeakMemory | None = None

    def to_dict(self) -> dict[str, float]:
        """The flat metrics a trial reports."""
        return {
            "latency_ms": self.latency_ms,
            "real_time_factor": self.real_time_factor,
            "storage_bytes": self.storage_bytes,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


class CostModel:
    """Prices model descriptions on target CPUs; profiles loaded by name are kept for reuse."""

    def __init__(self) -> None:
        self._profiles: dict[str, TargetProfile] = {}

    def estimate(self, description: ModelDescription, target: TargetProfile | str) -> CostEstimate:
        """Predict latency, storage and peak memory of `description` on `target`.

        Args:
            description: The built model, layer by layer.
            target: A profile, or a bundled target name / profile path for `load_target`.

        Raises:
            CostModelError: a layer of unknown kind or with a negative count.
            ProfileError: `target` names no valid profile.
        """
        profile = self._profile(target)
        for layer in description.layers:
            _check_counts(layer)
        runtime = get_runtime(profile.runtime)
        lowering = runtime.lower(description)
        pricing = _Pricing(profile, lowering.touched_bytes)
        layers = tuple(_lowered_cost(lowered, pricing) for lowered in lowering.layers)
        fixed_ms = sum(_kernel_cost(kernel, pricing).latency_ms for kernel in lowering.fixed)
        latency_ms = sum(layer.latency_ms for layer in layers) + fixed_ms
        stored_bytes = _bytes(sum(layer.stored_weight_bits for layer in description.layers))
        memory = peak_memory(lowering, runtime, profile.memory)
        return CostEstimate(
            target=profile.name,
            latency_ms=latency_ms,
            real_time_factor=latency_ms / 1000.0,
            storage_bytes=description.size_bytes if description.size_bytes > 0 else stored_bytes,
            peak_memory_bytes=memory.total_bytes,
            layers=layers,
            runtime=runtime.name,
            fixed_ms=fixed_ms,
            memory=memory,
        )

    def _profile(self, target: TargetProfile | str) -> TargetProfile:
        if isinstance(target, TargetProfile):
            return target
        if target not in self._profiles:
            self._profiles[target] = load_target(target)
        return self._profiles[target]


_DEFAULT_MODEL = CostModel()


def estimate(description: ModelDescription, target: TargetProfile | str) -> CostEstimate:
    """`CostModel.estimate` on a shared module-level model (profiles cached per process)."""
    return _DEFAULT_MODEL.estimate(description, target)


def kernel_class(layer: LayerDescription) -> str:
    """The kernel family a layer runs on in the roofline.

    Parameter-free kinds -> elementwise; every other layer runs on the class its description
    records, which its quantizer chose for its bit width (`spaces.description.weight_kernel_class`
    states the rule, table-decoded families answering lookup below 8 bits).
    Activation bits do not change the class: kernels with FP32 activations are priced as if the
    activations were quantized on the fly at no extra cost.

    Raises:
        CostModelError: the kind has no cost rule (never skipped silently).
    """
    if layer.kind in _OPS_PER_ELEMENT:
        return ELEMENTWISE_CLASS
    if layer.kind not in _MAC_KINDS:
        priced = sorted(_MAC_KINDS | _OPS_PER_ELEMENT.keys())
        raise CostModelError(
            f"layer {layer.name!r}: no cost rule for kind {layer.kind!r}; priced kinds: {priced}"
        )
    return layer.kernel_class


@dataclass(frozen=True)
class _Pricing:
    """What pricing a model's kernels on a target needs: the profile and the bytes one inference touches."""

    target: TargetProfile
    touched_bytes: float

    @property
    def cache_bytes(self) -> float:
        """The per-core L2, which the cache-dependent kernel features are relative to."""
        return self.target.l2_kb * 1024


def _lowered_cost(lowered: LoweredLayer, pricing: _Pricing) -> LayerCost:
    """A layer's cost: its kernels' summed, reported with its main (last) kernel's figures."""
    layer = lowered.layer
    if not lowered.kernels:
        return LayerCost(layer.name, layer.kind, lowered.variant, layer.macs_per_second, 0.0, 0.0, 0.0, FUSED, 0, 0.0)
    costs = [_kernel_cost(kernel, pricing) for kernel in lowered.kernels]
    main = costs[-1]
    return dataclasses.replace(
        main,
        name=layer.name,
        kind=layer.kind,
        kernel_class=lowered.variant,
        compute_ms=sum(cost.compute_ms for cost in costs),
        memory_ms=sum(cost.memory_ms for cost in costs),
        latency_ms=sum(cost.latency_ms for cost in costs),
    )


def _kernel_cost(kernel: Kernel, pricing: _Pricing) -> LayerCost:
    """One kernel's cost: fitted when the profile calibrated its key, else the roofline."""
    modelled = _modelled_cost(kernel, pricing.target)
    fitted = pricing.target.kernel_costs.get(kernel.key)
    if fitted is None:
        return modelled
    target = pricing.target
    features = priced_features(kernel, pricing.touched_bytes, pricing.cache_bytes, target.step_spill, target.float_lanes)
    fitted_ms = sum(fitted.get(name, 0.0) * value for name, value in features.items()) / NANOSECONDS_PER_MS
    return dataclasses.replace(modelled, compute_ms=fitted_ms, memory_ms=0.0, latency_ms=fitted_ms, bound=FITTED)


def _modelled_cost(kernel: Kernel, target: TargetProfile) -> LayerCost:
    """The roofline cost of a kernel: of the layer as executed, plus its per-run weight decode;
    of a runtime-added kernel, its elementwise work and one dispatch."""
    overhead_ms = target.per_layer_overhead_us / 1e3
    if kernel.layer is None:
        elements = kernel.features.get("elements", 0.0)
        compute_ms = _elementwise_seconds(1.0, elements, target) * 1e3
        latency_ms = compute_ms + overhead_ms if elements else 0.0
        return LayerCost(kernel.op, kernel.op, kernel.variant, 0.0, compute_ms, 0.0, latency_ms, "compute", 0, 0.0)
    cost = _layer_cost(kernel.layer, target)
    if kernel.variant != FLOAT_DECODED:
        return cost
    decode_ms = _elementwise_seconds(DECODE_OPS_PER_WEIGHT, kernel.layer.params, target) * 1e3 + overhead_ms
    return dataclasses.replace(cost, compute_ms=cost.compute_ms + decode_ms, latency_ms=cost.latency_ms + decode_ms)


def _layer_cost(layer: LayerDescription, target: TargetProfile) -> LayerCost:
    family = kernel_class(layer)
    weight_bytes = _bytes(layer.weight_storage_bits)
    passes = _weight_passes(weight_bytes, layer, target)
    traffic_bytes = weight_bytes * passes + _activation_bytes(layer)
    compute_seconds = _compute_seconds(layer, family, passes, target)
    memory_seconds = traffic_bytes / target.dram_bytes_per_second
    return LayerCost(
        name=layer.name,
        kind=layer.kind,
        kernel_class=family,
        macs=layer.macs_per_second,
        compute_ms=compute_seconds * 1e3,
        memory_ms=memory_seconds * 1e3,
        latency_ms=max(compute_seconds, memory_seconds) * 1e3 + _overhead_ms(layer, target),
        bound="compute" if compute_seconds >= memory_seconds else "memory",
        weight_bytes=weight_bytes,
        traffic_bytes=traffic_bytes,
    )


def _check_counts(layer: LayerDescription) -> None:
    for field in (
        "params",
        "extra_params",
        "overhead_bits",
        "macs_per_second",
        "input_elements_per_second",
        "output_elements_per_second",
        "sequential_steps_per_second",
    ):
        value = getattr(layer, field)
        if value < 0:
            raise CostModelError(f"layer {layer.name!r}: {field} must be >= 0, got {value!r}")
    if layer.activation_bits <= 0:
        raise CostModelError(
            f"layer {layer.name!r}: activation_bits must be > 0, got {layer.activation_bits!r}"
        )


def _compute_seconds(layer: LayerDescription, family: str, passes: int, target: TargetProfile) -> float:
    if family == ELEMENTWISE_CLASS:
        elements = max(layer.input_elements_per_second, layer.output_elements_per_second)
        return _elementwise_seconds(_OPS_PER_ELEMENT[layer.kind], elements, target)
    macs_per_cycle = target.sustained_macs_per_cycle(family)
    if layer.kind in _SEQUENTIAL_KINDS:
        macs_per_cycle *= GEMV_EFFICIENCY
    cycles = layer.macs_per_second / macs_per_cycle
    if family in _PACKED_CLASSES:
        cycles += layer.params * target.unpack_cycles_per_weight * passes
    return cycles / target.cycles_per_second


def _elementwise_seconds(ops_per_element: float, elements: float, target: TargetProfile) -> float:
    """fp32 operations on `elements` at one vector instruction of simd_width_bits / 32 lanes per cycle."""
    lanes = target.simd_width_bits / FLOAT_BITS
    return ops_per_element * elements / (lanes * target.cycles_per_second)


def _weight_passes(weight_bytes: int, layer: LayerDescription, target: TargetProfile) -> int:
    """How often the weights come from DRAM: once if they fit in cache, else once per L1 output
    tile (once per step for sequential kinds)."""
    if weight_bytes <= target.last_level_cache_bytes:
        return 1
    if layer.kind in _SEQUENTIAL_KINDS:
        return max(1, math.ceil(layer.sequential_steps_per_second))
    output_bytes = layer.output_elements_per_second * layer.activation_bits / 8
    return max(1, math.ceil(output_bytes / target.l1_bytes))


def _overhead_ms(layer: LayerDescription, target: TargetProfile) -> float:
    """One layer dispatch, plus a fraction of one per sequential step for recurrent kinds."""
    steps = layer.sequential_steps_per_second if layer.kind in _SEQUENTIAL_KINDS else 0.0
    return target.per_layer_overhead_us * (1.0 + steps * STEP_OVERHEAD_FRACTION) / 1e3


def _activation_bytes(layer: LayerDescription) -> float:
    return (layer.input_elements_per_second + layer.output_elements_per_second) * layer.activation_bits / 8


def _bytes(bits: int) -> int:
    return -(-bits // 8)
