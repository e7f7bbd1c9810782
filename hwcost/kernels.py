"""The kernels a runtime runs, each with the shape figures its cost is fitted on.

A runtime (`hwcost.runtimes`) turns a model description into kernels: one per layer it runs on
its own, none for a layer it fuses into the kernel before it, plus the work it adds (quantizing
and dequantizing the activations a QDQ graph quantizes wherever a float kernel writes or reads
them, the fixed work of one inference). A kernel's
cost key is `op/variant`: the op is the layer kind (with the operation of a parameter-free layer,
e.g. `activation.prelu`), the variant how the runtime runs it (`fp32` on constant float weights,
`fp32-decoded` on float weights decoded from codes on every run, `int8`, or a kernel class of the
modelled packed-kernel runtime).

Each op has a feature set: the figures of one kernel call that its time grows with. A calibrated
profile holds, per cost key, nanoseconds per unit of each feature (`hwcost.calibration` fits
them), so a kernel's time is the dot product of its features with them.

- The matrix shapes of a convolution or linear layer follow from its description alone: with M
  output channels, N output positions and K products per output, MACs = M * N * K, weights =
  M * K and outputs = M * N, so "unfolded" = N * K (the im2col buffer a convolution with a
  kernel wider than one fills) is MACs / M, and "positions" = N (frames, or pixels of a 2-D map)
  is MACs / weights: a convolution also pays per output position whatever its channel count
  (onnxruntime's int8 convolution walks an indirection buffer of input pointers per position).
- "narrow_positions" counts the positions of a convolution too narrow for the vectorised kernel:
  fewer than `VECTOR_CHANNELS` output channels, or products per output (K, input channels times
  kernel taps) not a multiple of `INPUT_CHANNEL_ALIGNMENT`. onnxruntime's int8 convolution then
  leaves its symmetric indirect kernel for im2col and a generic integer GEMM (MLAS
  `MlasConvSymPackWSize`), several times slower per MAC: a ResNet's stem (one input channel) and
  8-channel first stage cost far more than their MACs say.
- "nibble_weights" counts, for a runtime that decodes codes on every run, the weights whose codes
  sit in 4-bit containers, which a DequantizeLinear unpacks first.
- A runtime that runs a kernel in a channel-blocked layout (onnxruntime's NCHWc 2-D
  convolutions, `Kernel.blocked`) pads its output channels, and its input channels from one
  block up, to a multiple of the CPU's block (its float vector lanes), and computes on the
  padding: 24 channels run as 32 on a 16-lane CPU, nearly twice the MACs of a 24-to-24
  convolution. Its figures are those of the padded convolution (`priced_features`).
- Two depend on the per-core L2 cache (`priced_features`). Repeated inferences find a model's
  weights still in L2 when everything one inference touches fits there (its weights and the
  tensors its kernels write: between two reads of a weight all of that passes through the cache)
  and fetch them from further out on every run when it does not ("cold_weights" of a matrix
  product, in bytes). A recurrent layer reads its gate matrices on every step, from beyond L2
  when they do not fit ("spilled_steps", steps times bytes); an LSTM's input product runs in the
  same kernel as its loop, whose spill stands for both. How much of a set spills as it outgrows
  L2 is a `SpillRamp`: modelled for the cold weights, fitted on the machine for the steps.

Works on plain data; never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spaces.description import LayerDescription

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "gemm": ("calls", "macs", "inputs", "outputs", "weights", "nibble_weights", "unfolded", "positions", "narrow_positions",
             "cold_weights"),
    "sequence_input": ("calls", "macs", "inputs", "outputs", "weights", "nibble_weights", "unfolded"),
    "depthwise": ("calls", "macs", "inputs", "outputs", "weights", "nibble_weights"),
    "recurrent": ("calls", "macs", "steps", "outputs", "weights", "nibble_weights", "spilled_steps"),
    "elementwise": ("calls", "inputs", "outputs"),
    "conversion": ("calls", "elements"),
    "inference": ("calls", "inputs", "outputs"),
}
"""Feature set name -> the figures a kernel of that set is priced on."""

KIND_FEATURE_SETS: dict[str, str] = {
    "conv1d": "gemm",
    "conv2d": "gemm",
    "conv_transpose1d": "gemm",
    "linear": "gemm",
    "lstm_input": "sequence_input",
    "depthwise_conv": "depthwise",
    "lstm": "recurrent",
    "lstm_recurrent": "recurrent",
    "batchnorm": "elementwise",
    "groupnorm": "elementwise",
    "layernorm": "elementwise",
    "activation": "elementwise",
    "pooling": "elementwise",
    "elementwise": "elementwise",
    "layout": "elementwise",
}
"""Layer kind -> its feature set (every `spaces.description.LAYER_KINDS` entry has one)."""

QUANTIZE_OP = "quantize"
"""Op of the kernel that converts activations from a float region into an int8 one (QuantizeLinear)."""
DEQUANTIZE_OP = "dequantize"
"""Op of the kernel that converts activations from an int8 region back to float (DequantizeLinear).

The two are priced apart: a QuantizeLinear scales, rounds and saturates each element, a
DequantizeLinear only scales, and their mix differs between a calibration stack (one region,
entered and left once) and a model that enters and leaves int8 regions many times."""

ELEMENTWISE_CLASS = "elementwise"
"""Kernel class reported for parameter-free layers by the modelled packed-kernel runtime."""

INFERENCE_OP = "inference"
"""Op of the work of one inference call outside its kernels: argument checks, and the graph's
output, allocated and handed back as a new array on every run (graph input and output elements
are taken as the first layer's input and the last layer's output)."""

_SPECIAL_OPS = {QUANTIZE_OP: "conversion", DEQUANTIZE_OP: "conversion", INFERENCE_OP: "inference"}


class CostModelError(ValueError):
    """A layer the cost model cannot price: unknown kind or an impossible figure."""


@dataclass(frozen=True)
class Kernel:
    """One kernel call of one inference.

    Attributes:
        op: Layer kind (".operation" appended when the layer records one), or a runtime-added op.
        variant: How it runs: "fp32", "fp32-decoded", "int8", or a packed kernel class.
        features: Figures of the call, the names of `FEATURE_SETS[feature_set(op)]`.
        layer: The layer as the runtime runs it (its bits as executed), for the modelled roofline;
            None for runtime-added kernels.
        blocked: Whether it runs in a channel-blocked layout that pads channels to the CPU's
            block (see the module docstring).
    """

    op: str
    variant: str
    features: Mapping[str, float] = field(default_factory=dict)
    layer: LayerDescription | None = None
    blocked: bool = False

    @property
    def key(self) -> str:
        """The cost key a calibrated profile prices it by."""
        return f"{self.op}/{self.variant}"


def layer_op(layer: LayerDescription) -> str:
    """The op of a layer's kernel: its kind, plus its operation where it records one."""
    return f"{layer.kind}.{layer.operation}" if layer.operation else layer.kind


def feature_set(op: str) -> str:
    """The feature set of an op (layer ops by their kind).

    Raises:
        KeyError: an op of no known kind.
    """
    if op in _SPECIAL_OPS:
        return _SPECIAL_OPS[op]
    return KIND_FEATURE_SETS[op.partition(".")[0]]


def layer_features(layer: LayerDescription) -> dict[str, float]:
    """The figures of one call of `layer`'s kernel, by its kind's feature set.

    Raises:
        CostModelError: the kind has no cost rule (never skipped silently).
    """
    if layer.kind not in KIND_FEATURE_SETS:
        raise CostModelError(
            f"layer {layer.name!r}: no cost rule for kind {layer.kind!r}; priced kinds: {sorted(KIND_FEATURE_SETS)}"
        )
    inputs, outputs = layer.input_elements_per_second, layer.output_elements_per_second
    macs, weights = layer.macs_per_second, float(layer.params)
    kind_set = KIND_FEATURE_SETS[layer.kind]
    if kind_set in ("gemm", "sequence_input"):
        output_channels = _output_channels(macs, weights, outputs)
        unfolded = macs / output_channels if output_channels > 0 else 0.0
        positions = macs / weights if weights > 0 else 0.0
        narrow = layer.kind in _CONVOLUTIONS and _narrow(output_channels, weights / output_channels if output_channels else 0.0)
        return {
            "calls": 1.0, "macs": macs, "inputs": inputs, "outputs": outputs, "weights": weights, "nibble_weights": 0.0,
            "unfolded": unfolded, "positions": positions, "narrow_positions": positions if narrow else 0.0,
        }  # fmt: skip
    if kind_set == "depthwise":
        return {"calls": 1.0, "macs": macs, "inputs": inputs, "outputs": outputs, "weights": weights, "nibble_weights": 0.0}
    if kind_set == "recurrent":
        steps = layer.sequential_steps_per_second
        return {"calls": 1.0, "macs": macs, "steps": steps, "outputs": outputs, "weights": weights, "nibble_weights": 0.0}
    return {"calls": 1.0, "inputs": inputs, "outputs": outputs}


VECTOR_CHANNELS = 16
"""Fewest output channels onnxruntime's int8 convolution packs for its vectorised kernel (MLAS
`FilterOutputChannelPackCount`, every x86 dispatch)."""
INPUT_CHANNEL_ALIGNMENT = 4
"""Input channels that kernel takes in groups of (MLAS `KernelInputChannelAlignment`): a K that is
no multiple of it has input channels that are none either."""
_CONVOLUTIONS = frozenset({"conv1d", "conv2d"})


def _narrow(output_channels: float, reduction: float) -> bool:
    """Whether a convolution of `output_channels` and `reduction` products per output is too
    narrow for the vectorised kernel (see "narrow_positions")."""
    return round(output_channels) < VECTOR_CHANNELS or round(reduction) % INPUT_CHANNEL_ALIGNMENT != 0


@dataclass(frozen=True)
class SpillRamp:
    """How much of a working set read over and over misses a cache, by the set's size: none up
    to `start` times the cache, all of it from `full` times on, linearly more between.

    Under strict LRU replacement a set read cyclically misses on everything as soon as it
    outgrows the cache; real replacement policies keep part of it, and how much depends on the
    CPU, so the ramp stands for the policy. `DEFAULT_SPILL` is modelled; a calibration fits the
    ramp of the recurrent steps on the machine (`hwcost.calibration.fit`), where the grid's
    LSTMs read gate matrices from a twentieth of L2 to twice its size on every step.
    """

    start: float = 0.5
    full: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.full:
            raise ValueError(f"a spill ramp needs 0 <= start < full, got start={self.start}, full={self.full}")

    def fraction(self, working_bytes: float, cache_bytes: float) -> float:
        """The fraction of `working_bytes` read from beyond a cache of `cache_bytes` on each pass."""
        if cache_bytes <= 0:
            return 1.0
        return min(1.0, max(0.0, (working_bytes / cache_bytes - self.start) / (self.full - self.start)))


DEFAULT_SPILL = SpillRamp()
"""modelled: weights start to fall out of a cache once they fill half of it (activations, state and
code hold the rest), and all of them miss once they are twice its size."""


def weight_bytes(kernel: Kernel) -> float:
    """Bytes of the weights a kernel computes with, at the bits it runs at (0 for runtime-added kernels)."""
    layer = kernel.layer
    return 0.0 if layer is None else layer.params * layer.weight_bits / 8


def priced_features(
    kernel: Kernel, touched_bytes: float, cache_bytes: float, step_spill: SpillRamp = DEFAULT_SPILL, channel_block: int = 1
) -> dict[str, float]:
    """The figures a kernel is priced on: its feature set's, those of its padded convolution when
    it runs channel-blocked on a CPU of `channel_block` float lanes, and the cache-dependent ones
    for a model one inference of which touches `touched_bytes` (`Lowering.touched_bytes`) on a
    CPU with `cache_bytes` of L2 per core, whose recurrent steps spill their gate matrices by
    `step_spill`."""
    own_bytes = weight_bytes(kernel)
    steps = kernel.features.get("steps", 0.0)
    features = _padded(kernel, channel_block) if kernel.blocked else kernel.features
    cached = {
        "cold_weights": own_bytes * DEFAULT_SPILL.fraction(touched_bytes, cache_bytes),
        "spilled_steps": steps * own_bytes * step_spill.fraction(own_bytes, cache_bytes),
    }
    return {name: cached[name] if name in cached else features.get(name, 0.0) for name in FEATURE_SETS[feature_set(kernel.op)]}


def _padded(kernel: Kernel, block: int) -> Mapping[str, float]:
    """A blocked convolution's features with its channels padded to multiples of `block`: output
    channels always, input channels from one block up (fewer are read in place, unpadded)."""
    layer, features = kernel.layer, kernel.features
    macs = features.get("macs", 0.0)
    if layer is None or not layer.input_channels or block <= 1 or macs <= 0:
        return features
    output_channels = _output_channels(macs, features["weights"], features["outputs"])
    output_factor = _rounded_up(output_channels, block) / output_channels
    input_channels = layer.input_channels
    input_factor = _rounded_up(input_channels, block) / input_channels if input_channels >= block else 1.0
    scaled = {"macs": output_factor * input_factor, "weights": output_factor * input_factor, "outputs": output_factor}
    scaled.update(inputs=input_factor, unfolded=input_factor)
    return {name: value * scaled.get(name, 1.0) for name, value in features.items()}


def _output_channels(macs: float, weights: float, outputs: float) -> float:
    """M of a matrix product from its MACs (M N K), weights (M K) and outputs (M N); 0 without MACs."""
    return outputs * weights / macs if macs > 0 else 0.0


def _rounded_up(channels: float, block: int) -> int:
    return -(-round(channels) // block) * block


def conversion_kernel(op: str, elements: float) -> Kernel:
    """The conversion (`QUANTIZE_OP` or `DEQUANTIZE_OP`) of `elements` activations at an int8/float boundary."""
    return Kernel(op, "int8", {"calls": 1.0, "elements": elements})


def inference_kernel(inputs: float, outputs: float) -> Kernel:
    """The work of one inference call outside its kernels, for graph inputs and outputs of these sizes."""
    return Kernel(INFERENCE_OP, "fp32", {"calls": 1.0, "inputs": inputs, "outputs": outputs})


def check_coefficients(key: str, coefficients: Mapping[str, float]) -> str | None:
    """Why `coefficients` cannot price kernels of cost key `key`, or None when they can."""
    op, _, variant = key.partition("/")
    if not variant:
        return f"cost key {key!r} is not op/variant"
    try:
        names = FEATURE_SETS[feature_set(op)]
    except KeyError:
        return f"cost key {key!r}: unknown op {op!r} (a profile from an older calibration? run `search hwcost calibrate` again)"
    unknown = sorted(set(coefficients) - set(names))
    if unknown:
        return f"cost key {key!r}: unknown feature {unknown[0]!r}; expected some of {', '.join(names)}"
    return None


__all__ = [
    "FEATURE_SETS",
    "CostModelError",
    "DEFAULT_SPILL",
    "DEQUANTIZE_OP",
    "ELEMENTWISE_CLASS",
    "INFERENCE_OP",
    "INPUT_CHANNEL_ALIGNMENT",
    "KIND_FEATURE_SETS",
    "QUANTIZE_OP",
    "SpillRamp",
    "VECTOR_CHANNELS",
    "Kernel",
    "check_coefficients",
    "conversion_kernel",
    "feature_set",
    "inference_kernel",
    "layer_features",
    "layer_op",
    "priced_features",
    "weight_bytes",
]
