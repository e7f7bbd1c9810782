"""What a built model costs to store and run, as plain data.

`ModelDescription` is the one interface between `spaces` (which builds models) and `hwcost`
(which prices them), so this module imports neither torch nor anything heavy: a cost model,
a report or a remote worker can read it from JSON alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

FLOAT_BITS = 32
"""Bit width used for parameters and activations kept in floating point."""

LAYER_KINDS = (
    "conv1d",
    "conv2d",
    "depthwise_conv",
    "conv_transpose1d",
    "linear",
    "lstm",
    "lstm_input",
    "lstm_recurrent",
    "batchnorm",
    "groupnorm",
    "layernorm",
    "activation",
    "pooling",
    "elementwise",
    "layout",
)
"""Layer kinds a description may contain; `hwcost` prices every one of them ("layout" is a
change of axis order, filterbank frames to channels first, which moves every element)."""

OPERATIONS: dict[str, tuple[str, ...]] = {
    "activation": ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax"),
    "pooling": ("average", "statistics", "weighted_statistics", "global_context"),
    "elementwise": ("add", "multiply"),
}
"""Operations a parameter-free kind may record (`LayerDescription.operation`): a runtime runs each
as a different kernel (a PReLU is not fused into the convolution before it as a ReLU is; statistics
pooling makes several passes where average pooling makes one), so a calibrated cost model prices
them apart."""

WEIGHT_DECODINGS = ("linear", "table")
"""How an exported graph decodes a quantized layer's codes (`LayerDescription.weight_decoding`):
"linear" as `(code - zero_point) * scale` (ONNX DequantizeLinear), "table" by looking codes up in
a table of levels (ONNX Gather)."""

KERNEL_CLASSES = ("fp32", "int8", "lowbit", "lookup", "binary")
"""Kernel families a layer's weights may run on; a target profile gives each its own throughput."""

_TABLE_KERNEL_FAMILIES_BEFORE_RECORDING = ("kmeans", "pow2")
"""Quantizer families (name up to the first "-") that were priced as table lookups before
descriptions recorded `kernel_class`; only reading such old descriptions uses it."""


def weight_kernel_class(weight_bits: int, table_lookup: bool = False) -> str:
    """The kernel family for weights of `weight_bits` bits.

    Wider than 8 bits -> fp32 (no integer kernel; 9..31-bit weights are widened at load time);
    codes decoded through a table (`table_lookup`) below 8 bits -> lookup; 1 bit -> binary
    (xnor-popcount); 8 bits -> int8; 2..7 bits -> lowbit (unpacked to int8).
    """
    if weight_bits > 8:
        return "fp32"
    if table_lookup and weight_bits < 8:
        return "lookup"
    if weight_bits == 1:
        return "binary"
    if weight_bits == 8:
        return "int8"
    return "lowbit"


@dataclass(frozen=True)
class LayerDescription:
    """One layer's cost-relevant facts, for one second of input audio.

    Attributes:
        name: Stable layer name (configs address layers by it).
        kind: One of `LAYER_KINDS`.
        params: Number of weight elements (the quantizable tensor; 0 for parameter-free layers).
        extra_params: Parameters stored as floats beside the weights (biases, norm affine terms).
        macs_per_second: Multiply-accumulates per second of input audio.
        input_elements_per_second: Input activation elements per second of audio.
        output_elements_per_second: Output activation elements per second of audio.
        weight_bits: Bits per stored weight code (32 for FP32).
        activation_bits: Bits per activation element (32 for FP32).
        quantizer: Quantizer family of the weights ("none" when FP32).
        overhead_bits: Bits of quantizer side data (scales, zero points, codebooks).
        extra_bits: Bits per stored extra parameter: 32, or 16 when a compressed model stores
            its side data as float16 (`space.side_bits`).
        shared_with: Name of the layer whose weights this one reuses, or "" when it owns them.
        sequential_steps_per_second: Dependent time steps the layer runs per second of audio,
            each needing the previous one's result (a recurrent layer's frames times its stacked
            layers); 0 for layers whose frames are independent and can be batched.
        kernel_class: Kernel family its weights run on, one of `KERNEL_CLASSES`: what the
            quantizer says for its codes (`Quantizer.kernel_class`), fp32 for layers kept in
            floating point or without weights. Left empty, the rule for `weight_bits` alone
            (`weight_kernel_class`), which a quantizer decoded through a table must override.
        operation: The operation of a parameter-free layer, one of `OPERATIONS[kind]`; empty for
            kinds without operations and in descriptions written before operations were recorded.
        weight_decoding: How an exported graph decodes the layer's codes, one of
            `WEIGHT_DECODINGS`; empty for FP32 layers and in descriptions written before it was
            recorded.
        integer_weights: Whether an integer (QDQ) export writes the codes as int8 levels that
            onnxruntime's integer kernels run exactly (`Quantizer.runs_on_integer_kernels`): then a
            sub-8-bit layer runs on int8 kernels too. False for FP32 layers.
        input_layers: Positions in `ModelDescription.layers` of the layers whose outputs this
            layer reads, as traced: the model's dataflow, which decides how long a runtime holds
            each output (a skip path's input lives until the sum that reads it). Empty for a layer
            reading only model inputs or tensors no described layer wrote, and in descriptions
            written before the dataflow was recorded.
        input_channels: Input channels of a convolution, per group: with the output channels
            (`params` over the products per output) it says how a runtime that blocks channels
            pads them (onnxruntime's NCHWc layout). 0 for other kinds and in descriptions
            written before it was recorded.
    """

    name: str
    kind: str
    params: int = 0
    extra_params: int = 0
    macs_per_second: float = 0.0
    input_elements_per_second: float = 0.0
    output_elements_per_second: float = 0.0
    weight_bits: int = FLOAT_BITS
    activation_bits: int = FLOAT_BITS
    quantizer: str = "none"
    overhead_bits: int = 0
    extra_bits: int = FLOAT_BITS
    shared_with: str = ""
    sequential_steps_per_second: float = 0.0
    kernel_class: str = ""
    operation: str = ""
    weight_decoding: str = ""
    integer_weights: bool = False
    input_layers: tuple[int, ...] = ()
    input_channels: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_layers", tuple(self.input_layers))  # a list when read from JSON
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; expected one of {LAYER_KINDS}")
        if not 1 <= self.weight_bits <= FLOAT_BITS:
            raise ValueError(f"layer {self.name!r}: weight_bits={self.weight_bits} outside 1..32")
        if self.input_channels < 0:
            raise ValueError(f"layer {self.name!r}: input_channels={self.input_channels} is negative")
        if self.extra_bits not in (16, FLOAT_BITS):
            raise ValueError(f"layer {self.name!r}: extra_bits={self.extra_bits}; expected 16 or 32")
        if not self.kernel_class:
            object.__setattr__(self, "kernel_class", weight_kernel_class(self.weight_bits))
        if self.kernel_class not in KERNEL_CLASSES:
            raise ValueError(f"layer {self.name!r}: kernel_class={self.kernel_class!r}; expected one of {KERNEL_CLASSES}")
        if (self.kernel_class == "fp32") != (self.weight_bits > 8):
            raise ValueError(
                f"layer {self.name!r}: kernel_class={self.kernel_class!r} with weight_bits={self.weight_bits}; "
                "fp32 is the class of weights wider than 8 bits, and only of those"
            )
        if self.operation and self.operation not in OPERATIONS.get(self.kind, ()):
            raise ValueError(
                f"layer {self.name!r}: operation={self.operation!r}; a {self.kind} layer records one of "
                f"{OPERATIONS.get(self.kind, ())}"
            )
        if self.weight_decoding and self.weight_decoding not in WEIGHT_DECODINGS:
            raise ValueError(f"layer {self.name!r}: weight_decoding={self.weight_decoding!r}; expected one of {WEIGHT_DECODINGS}")

    @property
    def weight_storage_bits(self) -> int:
        """Bits of everything this layer computes with: codes, side data and extras (what inference reads)."""
        return self.params * self.weight_bits + self.overhead_bits + self.extra_params * self.extra_bits

    @property
    def stored_weight_bits(self) -> int:
        """Bits this layer adds to the model file (0 when its weights are shared)."""
        return 0 if self.shared_with else self.weight_storage_bits


@dataclass(frozen=True)
class ModelDescription:
    """A built model as a list of layers, plus the exact size of its packed weights file.

    Attributes:
        family: Model family name (e.g. "resnet").
        layers: Layers in execution order.
        sample_rate: Input sample rate in Hz.
        size_bytes: Length of the packed weights file written by `spaces.quant.packing`
            (header included); 0 when not yet packed.
        quantized_float_io: Whether its graph with quantized activations also quantizes the
            inputs and outputs of float ops its quantizer knows (onnxruntime's static
            quantization does: batch and group norms, ConvTranspose), not only those of its
            integer layers (the project's integer export); `hwcost.runtimes` prices the
            conversions this adds.
    """

    family: str
    layers: tuple[LayerDescription, ...]
    sample_rate: int = 16000
    size_bytes: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    quantized_float_io: bool = False

    def __post_init__(self) -> None:
        for position, layer in enumerate(self.layers):
            if any(not 0 <= source < position for source in layer.input_layers):
                raise ValueError(
                    f"layer {layer.name!r} (position {position}): input_layers={layer.input_layers}; a layer reads "
                    "only the outputs of layers before it"
                )

    @property
    def params(self) -> int:
        """All parameters, shared weights counted once."""
        return sum(0 if layer.shared_with else layer.params + layer.extra_params for layer in self.layers)

    @property
    def macs_per_second(self) -> float:
        return sum(layer.macs_per_second for layer in self.layers)

    def layer(self, name: str) -> LayerDescription:
        for candidate in self.layers:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no layer named {name!r} in {self.family} description")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDescription:
        """The description `to_dict` gave, or one written before layers recorded their kernel class."""
        layers = tuple(LayerDescription(**_with_kernel_class(layer)) for layer in data["layers"])
        return cls(**{**data, "layers": layers})


def _with_kernel_class(layer: dict[str, Any]) -> dict[str, Any]:
    """`layer`, with the kernel class the cost model derived from its quantizer's name when it records none."""
    if "kernel_class" in layer:
        return layer
    family = layer.get("quantizer", "none").partition("-")[0]
    table_lookup = family in _TABLE_KERNEL_FAMILIES_BEFORE_RECORDING
    return {**layer, "kernel_class": weight_kernel_class(layer.get("weight_bits", FLOAT_BITS), table_lookup)}
