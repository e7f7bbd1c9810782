"""Runtimes: how a model description becomes the kernels that really run (a registry).

A target is a device profile plus a runtime. The runtime decides, layer by layer, which kernel
runs (a float convolution, an int8 one, a float one fed by weights decoded on every run), which
layers it fuses into the kernel before them, and what it adds between kernels. The rules below
are what onnxruntime's CPU execution provider does to the graphs `search.onnx_export` writes, at
its default optimisation level (ORT_ENABLE_ALL), as its graph transformers state them:

- ConvBNFusion folds a BatchNormalization into the Conv before it when the weights are constant;
  ConvActivationFusion and GemmActivationFusion fuse Relu, LeakyRelu, Sigmoid and Tanh (not
  PRelu, not Softmax) into the Conv or Gemm before them (constant weights or not);
  NchwcTransformer runs 2-D convolutions with constant weights in the blocked NCHWc layout
  (channels padded to the CPU's block: `hwcost.kernels`), and there also fuses a residual Add
  (and the Relu after it) into the convolution;
- a weight that a DequantizeLinear decodes stays a per-run DequantizeLinear at every
  optimisation level (its input is not a constant onnxruntime folds), so its convolution is a
  float one on non-constant weights: no batch-norm folding, no NCHWc; a weight decoded by a
  Gather from a table is constant-folded to float when the session loads;
- in a QDQ graph (static quantization by `onnxruntime.quantization`, batch norms folded first),
  QDQ propagation turns Conv, Gemm, Add, Mul, Sigmoid, Softmax and GlobalAveragePool into
  QLinear kernels, and the quantizer removes a Relu whose input is quantized (QDQRemovableActivation:
  the output range of the kernel before it starts at zero), after a QLinearConv as after a
  QLinearAdd (a ResNet block's sum and ReLU); ConvTranspose, PRelu, LSTM,
  InstanceNormalization (GroupNorm), an unfolded BatchNormalization, Tanh and the statistics
  pooling reductions have no QLinear kernel and run in float between a DequantizeLinear and a
  QuantizeLinear: each change between the two regions is a conversion kernel, a quantize into
  int8 or a dequantize out of it (also where the graph's float output leaves an int8 kernel).
  onnxruntime's static quantizer also quantizes the inputs and outputs of the float ops it knows
  (BatchNormalization, InstanceNormalization, LayerNormalization, ConvTranspose:
  `quantized_float_ops`), and nothing fuses those pairs away, so in its graphs (the int8
  calibration and validation graphs, `ModelDescription.quantized_float_io`) such a kernel is
  entered through a DequantizeLinear and left through a QuantizeLinear even between float
  kernels and at the graph's float input and output (a chain of batch norms runs a quantize and
  a dequantize between every two); the project's integer export quantizes only around its
  integer layers, so a group norm between a PReLU and a convolution costs no pair there;
- a QLinearConv runs channels-last (NhwcTransformer), between a Transpose into that layout and
  one out of it, which the transpose optimiser cancels against the model's own transposes where
  they meet: a 1-D convolution reads filterbank frames `[batch, frames, bins]` as they come (the
  model's layout change to channels first and the runtime's back cancel, and neither runs), while
  a 2-D one on `[batch, 1, bins, frames]` merges the two into one real transpose of the
  spectrogram (priced as the layout layer's int8 kernel). The integer
  kernels run 8-bit weights, and also narrower codes that the project's integer export writes as
  exact int8 levels (`LayerDescription.integer_weights`: symmetric uniform, few-level pow2, binary).

The modelled `packed-kernels` runtime is the one the bundled target profiles have always priced:
integer kernels for every kernel class (int8, unpacked low-bit, lookup, xnor-popcount), no
fusion. No runtime on an x86 host executes it, so it is modelled only and cannot be validated.

Works on plain data; never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from hwcost.kernels import (
    DEQUANTIZE_OP,
    ELEMENTWISE_CLASS,
    KIND_FEATURE_SETS,
    QUANTIZE_OP,
    Kernel,
    conversion_kernel,
    inference_kernel,
    layer_features,
    layer_op,
    weight_bytes,
)
from spaces.description import FLOAT_BITS, LayerDescription, ModelDescription

FLOAT = "fp32"
"""Variant: float kernel on constant float weights."""
FLOAT_DECODED = "fp32-decoded"
"""Variant: float kernel on weights decoded from integer codes on every run (DequantizeLinear)."""
INT8 = "int8"
"""Variant: integer kernel on 8-bit weights and 8-bit activations (QLinearConv, QLinearMatMul, ...)."""

_INT8_WEIGHT_BITS = 8
_CONTAINER_BITS = (4, 8)
"""Integer container widths of exported codes (`search.onnx_export`: UINT4/INT4 up to 4 bits, 8 above)."""

_FUSED_ACTIVATIONS = frozenset({"activation.relu", "activation.leaky_relu", "activation.sigmoid", "activation.tanh"})
"""Activations ConvActivationFusion / GemmActivationFusion fuse into a Conv or Gemm before them."""

_BLOCKED_KINDS = frozenset({"conv2d"})
"""Kinds whose float kernel on constant weights runs in the NCHWc layout (NchwcTransformer: 2-D convolutions only)."""

_INT8_MAC_KINDS = frozenset({"conv1d", "conv2d", "depthwise_conv", "linear"})
"""Kinds with a QLinear kernel (QLinearConv, QGemm); ConvTranspose and LSTM have none."""

_STATIC_FLOAT_KINDS = frozenset({"lstm", "lstm_input", "lstm_recurrent"})
"""Kinds static quantization does not quantize at all (onnxruntime's QDQ quantizer has no LSTM
rule): their weights stay constant floats. Other kinds without a QLinear kernel (ConvTranspose)
get quantized weights that a DequantizeLinear decodes on every run."""

_INT8_PARAMETER_FREE_OPS = frozenset(
    {"elementwise.add", "elementwise.multiply", "activation.sigmoid", "activation.softmax", "pooling.average", "layout"}
)
"""Parameter-free ops a QDQ graph runs as QLinear kernels (QLinearAdd, QLinearMul, QLinearSigmoid,
QLinearSoftmax, QLinearGlobalAveragePool), or on the 8-bit codes (a Transpose, which QDQ
propagation moves the quantize ahead of)."""


@dataclass(frozen=True)
class Epilogue:
    """The ops a kernel absorbs after it, stage by stage, each stage optional and taken in order."""

    stages: tuple[frozenset[str], ...] = ()

    def absorbs(self, stage: int, op: str) -> int | None:
        """The stage after the one matching `op` at or after `stage`, or None when none matches."""
        for index in range(stage, len(self.stages)):
            if op in self.stages[index]:
                return index + 1
        return None


_NO_EPILOGUE = Epilogue()


@dataclass(frozen=True)
class LoweredLayer:
    """One description layer as a runtime runs it.

    Attributes:
        layer: The layer as described.
        variant: How it runs (`FLOAT`, `FLOAT_DECODED`, `INT8`, or a packed kernel class).
        kernels: Its kernel calls (none when fused), a quantize or dequantize before it included.
        fused_into: Name of the layer whose kernel it runs in, or "" when it runs its own.
    """

    layer: LayerDescription
    variant: str
    kernels: tuple[Kernel, ...]
    fused_into: str = ""

    @property
    def output_bytes(self) -> float:
        """Bytes of the tensor the layer writes, at the bits its kernel writes it."""
        executed = self.kernels[-1].layer if self.kernels and self.kernels[-1].layer else self.layer
        return executed.output_elements_per_second * executed.activation_bits / 8


@dataclass(frozen=True)
class Lowering:
    """A description lowered to kernels: per layer, plus the runtime's fixed work per inference."""

    layers: tuple[LoweredLayer, ...]
    fixed: tuple[Kernel, ...] = ()

    @property
    def weight_bytes(self) -> float:
        """Bytes of the weights one inference computes with (shared weights once), at the bits they run at."""
        return sum(weight_bytes(lowered.kernels[-1]) for lowered in self.layers if lowered.kernels and not lowered.layer.shared_with)

    @property
    def touched_bytes(self) -> float:
        """Bytes one inference reads or writes once each: its weights and every tensor its kernels
        write (a layer fused into the kernel before it writes none).

        Between two reads of one weight on successive inferences everything else an inference
        touches passes through the cache, so this, not the weights alone, decides whether the
        weights are still in L2 when the next inference starts (`hwcost.kernels.priced_features`).
        """
        return self.weight_bytes + sum(lowered.output_bytes for lowered in self.layers if not lowered.fused_into)


class Runtime(ABC):
    """How one runtime runs descriptions: kernels, fusion, and what its weights occupy in memory."""

    name: str
    summary: str

    @abstractmethod
    def lower(self, description: ModelDescription) -> Lowering:
        """The kernels one inference of `description` runs.

        Raises:
            CostModelError: a layer of a kind with no cost rule.
        """

    @abstractmethod
    def resident_weight_bits(self, lowered: LoweredLayer) -> float:
        """Bits the runtime keeps of the layer's weights and extras for the session's lifetime (one copy)."""

    def decoded_weight_bits(self, lowered: LoweredLayer) -> float:
        """Bits of float weights the runtime decodes for the layer on each run (freed after it)."""
        return 0.0


class PackedKernelsRuntime(Runtime):
    """The modelled runtime with an integer kernel for every kernel class and no fusion."""

    name = "packed-kernels"
    summary = "modelled: int8, unpacked low-bit, lookup and xnor-popcount kernels, no fusion (no runtime here executes it)"

    def lower(self, description: ModelDescription) -> Lowering:
        lowered = []
        for layer in description.layers:
            features = layer_features(layer)
            variant = ELEMENTWISE_CLASS if KIND_FEATURE_SETS[layer.kind] == "elementwise" else layer.kernel_class
            lowered.append(LoweredLayer(layer, variant, (Kernel(layer_op(layer), variant, features, layer),)))
        return Lowering(tuple(lowered))

    def resident_weight_bits(self, lowered: LoweredLayer) -> float:
        return float(lowered.layer.weight_storage_bits)


@dataclass(frozen=True)
class _Side:
    """How a kernel of a QDQ graph meets the tensors around it.

    Attributes:
        quantizes: Whether the quantizer quantizes its inputs and outputs (a Quantize/Dequantize pair on each).
        integer: Whether it reads and writes the 8-bit codes itself (a QLinear kernel), absorbing its side of the pairs.
    """

    quantizes: bool
    integer: bool


_FLOAT_SIDE = _Side(quantizes=False, integer=False)
_QUANTIZED_FLOAT_SIDE = _Side(quantizes=True, integer=False)
_INT8_SIDE = _Side(quantizes=True, integer=True)


def _side(layer: LayerDescription, variant: str, quantized_float_ops: frozenset[str]) -> _Side:
    if variant == INT8:
        return _INT8_SIDE
    return _QUANTIZED_FLOAT_SIDE if layer_op(layer) in quantized_float_ops else _FLOAT_SIDE


def _conversions(writer: _Side, reader: _Side, elements: float) -> list[Kernel]:
    """The conversion kernels on a tensor of `elements` between the kernel that writes it and the
    one that reads it: a tensor either of them quantizes keeps its QuantizeLinear unless an int8
    kernel writes it, and its DequantizeLinear unless an int8 kernel reads it."""
    if not (writer.quantizes or reader.quantizes):
        return []
    ops = ([] if writer.integer else [QUANTIZE_OP]) + ([] if reader.integer else [DEQUANTIZE_OP])
    return [conversion_kernel(op, elements) for op in ops]


Placement = Callable[[LayerDescription, bool], str]
"""(layer, whether the model's activations are quantized) -> the variant the layer runs as."""


def _float_placement(layer: LayerDescription, quantized_activations: bool) -> str:
    return FLOAT


def _weight_only_placement(layer: LayerDescription, quantized_activations: bool) -> str:
    decoded_per_run = layer.params > 0 and layer.weight_bits <= 8 and layer.weight_decoding != "table"
    return FLOAT_DECODED if decoded_per_run else FLOAT


def _static_int8_placement(layer: LayerDescription, quantized_activations: bool) -> str:
    if layer.params == 0:
        return INT8 if quantized_activations and layer_op(layer) in _INT8_PARAMETER_FREE_OPS else FLOAT
    integer = layer.weight_bits == _INT8_WEIGHT_BITS or layer.integer_weights
    if layer.kind in _INT8_MAC_KINDS and integer and layer.activation_bits <= 8:
        return INT8
    if layer.kind in _STATIC_FLOAT_KINDS and quantized_activations:
        return FLOAT
    return _weight_only_placement(layer, quantized_activations)


@dataclass(frozen=True)
class GraphRuntime(Runtime):
    """A graph runtime described by data: where each layer runs, what each kernel absorbs after it.

    Attributes:
        name: Registry name.
        summary: One line on what it runs.
        placement: The variant each layer runs as.
        epilogues: (kind, variant) -> the ops a kernel of that kind and variant absorbs after it.
        requantizes: Whether the tensors around int8 kernels cost conversion kernels (quantize
            into int8, dequantize out of it, also at the graph's float input and output).
        quantized_float_ops: Ops of float kernels whose input and output tensors are quantized
            all the same in a description with `quantized_float_io`, so that they cost
            conversions too (see `_conversions`).
        frame_major_readers: Kinds whose int8 kernel runs channels-last and so reads filterbank
            frames as they come: a layout change to channels-first right before it cancels
            against the transpose back the runtime would add, and neither runs.
    """

    name: str
    summary: str
    placement: Placement
    epilogues: Mapping[tuple[str, str], Epilogue]
    requantizes: bool = False
    quantized_float_ops: frozenset[str] = frozenset()
    frame_major_readers: frozenset[str] = frozenset()

    def lower(self, description: ModelDescription) -> Lowering:
        quantized_activations = any(layer.activation_bits < FLOAT_BITS for layer in description.layers)
        lowered: list[LoweredLayer] = []
        owner: LoweredLayer | None = None
        stage = 0
        writer = _FLOAT_SIDE  # of the tensor the next kernel reads: the graph's float input first
        quantized_float_ops = self.quantized_float_ops if description.quantized_float_io else frozenset()
        for layer in description.layers:
            features = layer_features(layer)
            variant = self.placement(layer, quantized_activations)
            if owner is not None:
                next_stage = self.epilogues.get((owner.layer.kind, owner.variant), _NO_EPILOGUE).absorbs(stage, layer_op(layer))
                if next_stage is not None:
                    stage = next_stage
                    lowered.append(LoweredLayer(layer, owner.variant, (), fused_into=owner.layer.name))
                    continue
            if variant == FLOAT_DECODED:
                features["nibble_weights"] = float(layer.params) if _container_bits(layer) == min(_CONTAINER_BITS) else 0.0
            blocked = variant == FLOAT and layer.kind in _BLOCKED_KINDS
            kernels = [Kernel(layer_op(layer), variant, features, _as_executed(layer, variant), blocked)]
            if self.requantizes:
                reader = _side(layer, variant, quantized_float_ops)
                kernels[:0] = _conversions(writer, reader, layer.input_elements_per_second)
                writer = reader
            if owner is not None and owner is lowered[-1] and self._cancels(owner, layer, variant):
                kernels[:0] = owner.kernels[:-1]  # the conversion into int8 before the layout change stays
                lowered[-1] = LoweredLayer(owner.layer, owner.variant, (), fused_into=layer.name)
            owner = LoweredLayer(layer, variant, tuple(kernels))
            stage = 0
            lowered.append(owner)
        layers = description.layers
        ends = (layers[0].input_elements_per_second, layers[-1].output_elements_per_second) if layers else (0.0, 0.0)
        fixed = [inference_kernel(*ends)]
        if owner is not None:  # the graph's float output, converted from what the last kernel writes
            fixed.extend(_conversions(writer, _FLOAT_SIDE, owner.layer.output_elements_per_second))
        return Lowering(tuple(lowered), tuple(fixed))

    def _cancels(self, previous: LoweredLayer, layer: LayerDescription, variant: str) -> bool:
        """Whether `previous`, the kernel right before `layer`'s, is a layout change to channels
        first that `layer`'s channels-last int8 kernel cancels (see `frame_major_readers`)."""
        into_int8 = previous.variant == INT8 and variant == INT8
        return into_int8 and previous.layer.kind == "layout" and layer.kind in self.frame_major_readers

    def resident_weight_bits(self, lowered: LoweredLayer) -> float:
        layer = lowered.layer
        extras = layer.extra_params * FLOAT_BITS
        if lowered.variant == INT8:
            return layer.params * _INT8_WEIGHT_BITS + extras
        if lowered.variant == FLOAT_DECODED:
            return layer.params * _container_bits(layer) + layer.overhead_bits + extras
        return (layer.params + layer.extra_params) * FLOAT_BITS

    def decoded_weight_bits(self, lowered: LoweredLayer) -> float:
        return lowered.layer.params * FLOAT_BITS if lowered.variant == FLOAT_DECODED else 0.0


def _container_bits(layer: LayerDescription) -> int:
    """Bits per code of the integer container an exported graph stores the layer's codes in."""
    return next(bits for bits in _CONTAINER_BITS if layer.weight_bits <= bits)


def _as_executed(layer: LayerDescription, variant: str) -> LayerDescription:
    """`layer` with the bits it runs at: float weights and activations unless the kernel is int8."""
    if variant == INT8:
        return replace(layer, activation_bits=min(layer.activation_bits, _INT8_WEIGHT_BITS))
    if layer.weight_bits == FLOAT_BITS and layer.activation_bits == FLOAT_BITS:
        return layer
    return replace(
        layer, weight_bits=FLOAT_BITS, activation_bits=FLOAT_BITS, kernel_class="fp32", quantizer="none",
        overhead_bits=0, weight_decoding="",
    )  # fmt: skip


def _epilogues(variant: str, *entries: tuple[tuple[str, ...], tuple[frozenset[str], ...]]) -> dict[tuple[str, str], Epilogue]:
    return {(kind, variant): Epilogue(stages) for kinds, stages in entries for kind in kinds}


_BATCHNORM = frozenset({"batchnorm"})
_RESIDUAL_ADD = frozenset({"elementwise.add"})
_RELU = frozenset({"activation.relu"})

_FLOAT_EPILOGUES = {
    **_epilogues(FLOAT, (("conv1d", "depthwise_conv"), (_BATCHNORM, _FUSED_ACTIVATIONS))),
    **_epilogues(FLOAT, (("conv2d",), (_BATCHNORM, _RESIDUAL_ADD, _FUSED_ACTIVATIONS))),
    **_epilogues(FLOAT, (("linear",), (_FUSED_ACTIVATIONS,))),
}
_DECODED_EPILOGUES = _epilogues(FLOAT_DECODED, (("conv1d", "conv2d", "depthwise_conv", "linear"), (_FUSED_ACTIVATIONS,)))
_INT8_EPILOGUES = {
    **_epilogues(INT8, (("conv1d", "conv2d", "depthwise_conv"), (_BATCHNORM, _RELU))),
    **_epilogues(INT8, (("linear", "elementwise", "activation", "pooling"), (_RELU,))),
}

RUNTIMES: dict[str, Runtime] = {}
"""Registered runtimes by name."""

DEFAULT_RUNTIME = PackedKernelsRuntime.name
"""The runtime of a profile that names none: what the bundled (modelled) profiles price."""


def register_runtime(runtime: Runtime) -> Runtime:
    """Add a runtime to the registry (a second one of the same name is an error)."""
    if runtime.name in RUNTIMES:
        raise ValueError(f"runtime {runtime.name!r} is already registered")
    RUNTIMES[runtime.name] = runtime
    return runtime


def get_runtime(name: str) -> Runtime:
    """The registered runtime `name`.

    Raises:
        KeyError: naming the registered runtimes.
    """
    if name not in RUNTIMES:
        raise KeyError(f"unknown runtime {name!r}; registered: {', '.join(sorted(RUNTIMES))}")
    return RUNTIMES[name]


register_runtime(PackedKernelsRuntime())
register_runtime(
    GraphRuntime(
        "onnxruntime-fp32",
        "onnxruntime CPU, float graph: batch norms folded, activations fused, NCHWc 2-D convolutions",
        _float_placement,
        _FLOAT_EPILOGUES,
    )
)
register_runtime(
    GraphRuntime(
        "onnxruntime-int8",
        "onnxruntime CPU, QDQ graph (static quantization) fused to QLinearConv/QLinearMatMul; "
        "ConvTranspose, PRelu, LSTM and norms stay float",
        _static_int8_placement,
        {**_INT8_EPILOGUES, **_FLOAT_EPILOGUES, **_DECODED_EPILOGUES},
        requantizes=True,
        quantized_float_ops=frozenset({"batchnorm", "groupnorm", "layernorm", "conv_transpose1d"}),
        frame_major_readers=frozenset({"conv1d"}),
    )
)
register_runtime(
    GraphRuntime(
        "onnxruntime-weight-only",
        "onnxruntime CPU, weight-only bundles: DequantizeLinear decodes on every run, Gather-decoded weights "
        "folded to float at load",
        _weight_only_placement,
        {**_FLOAT_EPILOGUES, **_DECODED_EPILOGUES},
    )
)


__all__ = [
    "DEFAULT_RUNTIME",
    "FLOAT",
    "FLOAT_DECODED",
    "INT8",
    "RUNTIMES",
    "Epilogue",
    "GraphRuntime",
    "LoweredLayer",
    "Lowering",
    "PackedKernelsRuntime",
    "Runtime",
    "get_runtime",
    "register_runtime",
]
