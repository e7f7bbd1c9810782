"""ONNX export of a compressed model whose quantized layers stay integers in the graph.

torch's TorchScript exporter (`dynamo=False`; the default exporter needs `onnxscript`) traces the
float graph with constant folding off, so batch norms are not folded into the convolutions and
every quantizable layer's weight remains an initializer named after its state-dict key
(`<layer>.weight`). Neither torch exporter can write sub-8-bit weights, so the graph is then
rewritten: each quantized layer's float initializer is removed, and a small decode subgraph
computes a tensor of the same name from the layer's packed codes, exactly as the quantizer's
`dequantize` does (the same float32 operations, so ONNX and PyTorch weights are bit-identical).
Whatever the traced graph does with the weight then reads the decoded tensor: a convolution
directly, an ONNX `LSTM` through the Slice/Concat/Unsqueeze nodes that reorder a
`QuantizableLSTM`'s gate matrices (`l{k}.ih`, `l{k}.hh`) from torch's gate order to ONNX's.
The subgraph is built for the decoding the quantizer declares (`Quantizer.decoding`):

- `DequantizeLinear` (e.g. the uniform family): `DequantizeLinear(codes, scale, zero_point, axis=0)`;
- `ScaledTable` (e.g. pow2, binary): `Gather(level table, codes)` times the per-channel scale
  (plus the per-channel offset, as adaptive binarization has), the table being the quantizer's
  levels at unit scale;
- `CodebookLookup` (e.g. k-means): `Gather(codebook, codes)`, with a per-channel offset into the
  stacked codebooks of per-group codebooks.

Codes are stored as they are in `weights.bin`, in UINT4 initializers (ONNX opset 21) at 4 bits
or fewer, UINT8 otherwise; the symmetric grid's centre is the zero point. Unsigned weights matter
for int8 inference: onnxruntime's u8 x s8 kernels can saturate on AVX2 CPUs without VNNI, its
u8 x u8 kernels do not. An asymmetric layer whose zero point falls outside the unsigned container
is stored as signed levels `code - zero_point` in the smallest signed container that holds them.

Frozen `ActivationQuantizer` modules become `QuantizeLinear`/`DequantizeLinear` pairs (int8 when
signed, uint8 otherwise; a `Clip` to the grid first below 8 bits); ones still calibrating are
the identity, as in PyTorch.

When every activation quantizer is frozen at 8 bits, the graph is written for onnxruntime's
integer kernels instead (`search.qdq_export`): layers whose codes are exactly int8 levels within
the kernels' safe range get one int8 DequantizeLinear (sub-8-bit codes widened to 8-bit
containers), the batch norms after them are folded in, and signed activation pairs become uint8;
every other layer keeps the decode above, and the graph's metadata says why.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.onnx import symbolic_helper

from search.qdq_export import finish_integer_graph, int8_decode, integer_layers
from spaces.quant import (
    INTEGER_ACTIVATION_BITS,
    INTEGER_KERNEL_LEVEL,
    ActivationQuantizer,
    CodebookLookup,
    Decoding,
    DequantizeLinear,
    QuantizedWeight,
    ScaledTable,
    get_quantizer,
)

OPSET = 21
"""ONNX opset of exported models: the first with INT4/UINT4 tensors."""

_TRACE_OPSET = 20
"""Highest opset the TorchScript exporter writes; the traced graph is converted to `OPSET`."""

WEIGHT_INPUTS: Mapping[str, tuple[int, ...]] = {
    "Conv": (1,),
    "ConvTranspose": (1,),
    "Gemm": (1,),
    "MatMul": (1,),
    "LSTM": (1, 2),
}
"""Operator -> the inputs that take layer weights. An `LSTM` node's W (input 1, every gate's
input matrix) and R (input 2, the recurrent matrices) each come from one layer's weight (a
`QuantizableLSTM`'s `l{k}.ih` and `l{k}.hh`), reordered from torch's gate order to ONNX's by
Slice/Concat/Unsqueeze nodes."""

_INTEGER_TYPES = {
    TensorProto.UINT4: "UINT4",
    TensorProto.INT4: "INT4",
    TensorProto.UINT8: "UINT8",
    TensorProto.INT8: "INT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.INT16: "INT16",
}


class _Container(NamedTuple):
    """An ONNX integer tensor type with its numpy counterpart and range."""

    onnx_type: int
    numpy_type: type
    smallest: int
    largest: int
    bits: int


_CONTAINERS = (
    _Container(TensorProto.UINT4, ml_dtypes.uint4, 0, 15, 4),
    _Container(TensorProto.INT4, ml_dtypes.int4, -8, 7, 4),
    _Container(TensorProto.UINT8, np.uint8, 0, 255, 8),
    _Container(TensorProto.INT8, np.int8, -128, 127, 8),
    _Container(TensorProto.INT16, np.int16, -(2**15), 2**15 - 1, 16),
)


class OnnxExportError(ValueError):
    """A model or quantized layer the exporter cannot write as an integer ONNX graph."""


@dataclass(frozen=True)
class WeightStorage:
    """How one layer's weight is stored in an ONNX graph.

    Attributes:
        dtype: Integer container of its codes ("UINT4", "INT8", ...), or "FLOAT" when the weight
            reaches its operator as float values.
        shape: Shape of the codes (or of the float weight).
    """

    dtype: str
    shape: tuple[int, ...]

    @property
    def integer(self) -> bool:
        return self.dtype != "FLOAT"


def export_onnx(
    model: nn.Module,
    quantized: Mapping[str, QuantizedWeight],
    example_inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    largest_weight_level: int = INTEGER_KERNEL_LEVEL,
) -> onnx.ModelProto:
    """Trace `model` to ONNX and replace its quantized layers' weights by their integer codes.

    Args:
        model: The compressed model; its quantized layers hold the dequantized codes.
        quantized: Layer name -> its quantized weight (layers sharing one weight may map to the
            same object; it is written once).
        example_inputs: Input name -> example tensor, in the model's argument order.
        output_names: Names of the model's outputs.
        dynamic_axes: Tensor name -> {axis: symbolic name} for axes that vary (batch, time).
        largest_weight_level: With 8-bit activations, the largest int8 weight level written for
            integer kernels (`search.qdq_export`); the default is safe on every x86 CPU.

    Raises:
        OnnxExportError: A quantized layer whose weight is not in the traced graph though the
            outputs depend on it, or a quantizer family with no decoding the exporter builds.
    """
    traced = _trace(model, example_inputs, output_names, dynamic_axes)
    initializers = {tensor.name: tensor for tensor in traced.graph.initializer}
    missing = [layer for layer in quantized if f"{layer}.weight" not in initializers]
    unused = unused_layers(model, example_inputs, missing) if missing else set()
    written_layers: list[str] = []
    written: set[int] = set()
    for layer, weight in quantized.items():
        name = f"{layer}.weight"
        if id(weight) in written and name not in initializers:
            continue  # a shared weight: the traced graph feeds every user from the owner's initializer
        if layer in unused:
            continue  # the tracer prunes weights the outputs do not depend on
        if name not in initializers:
            raise OnnxExportError(f"layer {layer!r}: no initializer {name!r} in the traced graph")
        written_layers.append(layer)
        written.add(id(weight))
    integer = integer_layers(traced, quantized, set(written_layers), largest_weight_level) if _integer_activations(model) else None
    decode_nodes: list[onnx.NodeProto] = []
    for layer in written_layers:
        name = f"{layer}.weight"
        if integer is not None and layer in integer.weights:
            nodes, tensors = int8_decode(name, integer.weights[layer])
        else:
            nodes, tensors = _decode(name, quantized[layer])
        traced.graph.initializer.remove(initializers.pop(name))
        traced.graph.initializer.extend(tensors)
        decode_nodes.extend(nodes)
    traced_nodes = list(traced.graph.node)
    del traced.graph.node[:]
    traced.graph.node.extend(decode_nodes + traced_nodes)  # decoders read initializers only: they go first
    if integer is not None:
        finish_integer_graph(traced, integer)
    converted = onnx.version_converter.convert_version(traced, OPSET)
    onnx.checker.check_model(converted, full_check=True)
    return converted


def _integer_activations(model: nn.Module) -> bool:
    """The model quantizes activations, all of them frozen at the integer kernels' bits (`search.qdq_export`)."""
    quantizers = [module for module in model.modules() if isinstance(module, ActivationQuantizer)]
    return bool(quantizers) and all(
        quantizer.mode == "quantize" and quantizer.bits == INTEGER_ACTIVATION_BITS for quantizer in quantizers
    )


def unused_layers(model: nn.Module, example_inputs: Mapping[str, torch.Tensor], layers: Sequence[str]) -> set[str]:
    """The layers among `layers` whose weight the outputs do not depend on (no gradient reaches it).

    E.g. the extractor's last residual convolution: its output is never read, so the traced graph
    has no such layer, although weights.bin stores it.
    """
    weights = {layer: model.get_submodule(layer).weight for layer in layers}
    trainable = {layer: weight for layer, weight in weights.items() if weight.requires_grad}
    with torch.enable_grad():
        outputs = model(*example_inputs.values())
        total = sum(output.sum() for output in (outputs if isinstance(outputs, tuple) else (outputs,)))
        gradients = torch.autograd.grad(total, list(trainable.values()), allow_unused=True) if trainable else ()
    used = {layer for layer, gradient in zip(trainable, gradients) if gradient is not None}
    return set(weights) - used


def weight_storage(graph_model: onnx.ModelProto) -> dict[str, WeightStorage]:
    """How the weight of every layer in the graph is stored, keyed by layer name.

    A layer is found by its weight tensor `<layer>.weight` feeding a weight input of an operator
    (`WEIGHT_INPUTS`), directly (a convolution's) or through nodes that reshape or reorder it (an
    LSTM's W and R, sliced into ONNX's gate order): walking back from the operator's input, the
    first `<layer>.weight` on each path is a layer's weight, so one LSTM node gives two layers. Only
    inputs computed from initializers alone are followed, so a MatMul of two activations names no
    layer. Walking back from `<layer>.weight` through the nodes that compute it, the largest
    initializer of rank two or more (a weight's rank; level tables and scale vectors are 1-D) is
    its storage: integer codes when the layer is decoded from them, a float tensor when the
    weights reach the operator as floats, whatever else is there.
    """
    graph = graph_model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    computed = input_dependent(graph)
    storage = {}
    for node in graph.node:
        for index in WEIGHT_INPUTS.get(node.op_type, ()):
            if index >= len(node.input) or not node.input[index] or node.input[index] in computed:
                continue
            for weight in _layer_weights(node.input[index], producers):
                stored = _stored(weight, producers, initializers)
                if stored is not None:
                    storage[weight.removesuffix(".weight")] = stored
    return storage


def input_dependent(graph: onnx.GraphProto) -> set[str]:
    """Tensors computed from the graph's inputs (activations), as opposed to from initializers alone."""
    initializers = {tensor.name for tensor in graph.initializer}
    dependent = {value.name for value in graph.input if value.name not in initializers}
    for node in graph.node:  # ONNX nodes are in topological order
        if any(name in dependent for name in node.input):
            dependent.update(node.output)
    return dependent


def _layer_weights(tensor: str, producers: Mapping[str, onnx.NodeProto]) -> list[str]:
    """The `<layer>.weight` tensors that `tensor` is computed from, stopping at the first on each path."""
    return sorted(_upstream(tensor, producers, lambda name: name.endswith(".weight")))


def _stored(
    weight: str, producers: Mapping[str, onnx.NodeProto], initializers: Mapping[str, onnx.TensorProto]
) -> WeightStorage | None:
    """The storage of tensor `weight`: the largest initializer of rank two or more it is computed from."""
    sources = [tensor for tensor in _source_initializers(weight, producers, initializers) if len(tensor.dims) >= 2]
    if not sources:
        return None
    largest = max(sources, key=lambda tensor: (int(np.prod(tensor.dims)), tensor.data_type in _INTEGER_TYPES))
    return WeightStorage(_INTEGER_TYPES.get(largest.data_type, "FLOAT"), tuple(largest.dims))


def _trace(
    model: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> onnx.ModelProto:
    """The float graph from the TorchScript exporter (in inference mode), batch norms unfolded, initializers named."""
    exported = _with_exportable_activations(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _flooring_division():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            exported,
            tuple(example_inputs.values()),
            buffer,
            dynamo=False,
            input_names=list(example_inputs),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=_TRACE_OPSET,
            do_constant_folding=False,
        )
    return onnx.load_from_string(buffer.getvalue())


_FLOOR_DIVISIONS = ("aten::floordiv", "aten::floor_divide")


@contextmanager
def _flooring_division() -> Iterator[None]:
    """Trace `//` as floor division while exporting.

    The TorchScript exporter writes integer `//` as ONNX `Div`, which truncates toward zero, so
    a length computed as `-(-samples // hop)` (a ceiling, as the extractor's frame count) is right
    for the traced length only: on other lengths the graph pads and crops wrongly.
    """
    for name in _FLOOR_DIVISIONS:
        torch.onnx.register_custom_op_symbolic(name, _floor_divide, _TRACE_OPSET)
    try:
        yield
    finally:
        for name in _FLOOR_DIVISIONS:
            torch.onnx.unregister_custom_op_symbolic(name, _TRACE_OPSET)


def _floor_divide(g: Any, dividend: Any, divisor: Any) -> Any:
    """`floor(a / b)`: Floor of the quotient for floats; `(a - a mod b) / b` (an exact Div) for integers."""
    if symbolic_helper._is_fp(dividend) or symbolic_helper._is_fp(divisor):
        return g.op("Floor", g.op("Div", dividend, divisor))
    remainder = g.op("Mod", dividend, divisor, fmod_i=0)  # Python's sign convention: that of the divisor
    return g.op("Div", g.op("Sub", dividend, remainder), divisor)


def _with_exportable_activations(model: nn.Module) -> nn.Module:
    """A copy of `model` whose activation quantizers trace to Q/DQ nodes (the original is untouched)."""
    if not any(isinstance(module, ActivationQuantizer) for module in model.modules()):
        return model
    exported = copy.deepcopy(model)
    for name, module in list(exported.named_modules()):
        if isinstance(module, ActivationQuantizer):
            parent, _, child = name.rpartition(".")
            replacement = _ExportedActivation(module) if module.mode == "quantize" else nn.Identity()
            setattr(exported.get_submodule(parent) if parent else exported, child, replacement)
    return exported


class _ExportedActivation(nn.Module):
    """A frozen activation quantizer's forward pass, traced as Q/DQ by `_QuantizeDequantize`."""

    def __init__(self, quantizer: ActivationQuantizer) -> None:
        super().__init__()
        smallest_step = 1e-8  # as ActivationQuantizer clamps it
        self.step = nn.Parameter(quantizer.step.detach().clamp_min(smallest_step).clone(), requires_grad=False)
        self.low, self.high = quantizer.levels
        self.bits = quantizer.bits

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return _QuantizeDequantize.apply(inputs, self.step, self.low, self.high, self.bits)


class _QuantizeDequantize(torch.autograd.Function):
    """`round(clamp(x / step, low, high)) * step`, exported as ONNX QuantizeLinear/DequantizeLinear."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, step: torch.Tensor, low: int, high: int, bits: int) -> torch.Tensor:
        return torch.round(torch.clamp(inputs / step, low, high)) * step

    @staticmethod
    def symbolic(g: Any, inputs: Any, step: Any, low: int, high: int, bits: int) -> Any:
        """The exporter's graph: (Clip), QuantizeLinear, DequantizeLinear, zero point 0."""
        signed = low < 0
        zero_point = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8 if signed else torch.uint8))
        if bits < 8:  # the 8-bit container saturates wider than the grid: clip to it first
            lower = g.op("Mul", step, g.op("Constant", value_t=torch.tensor(float(low))))
            upper = g.op("Mul", step, g.op("Constant", value_t=torch.tensor(float(high))))
            inputs = g.op("Clip", inputs, lower, upper)
        codes = g.op("QuantizeLinear", inputs, step, zero_point)
        return g.op("DequantizeLinear", codes, step, zero_point)


DecodeGraph = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
"""The nodes and initializers that compute a layer's weight tensor from its codes."""


def _decode(name: str, weight: QuantizedWeight) -> DecodeGraph:
    """The graph computing tensor `name` from `weight`, built for its quantizer's declared decoding.

    Raises:
        OnnxExportError: The quantizer declares no decoding, or one the exporter has no builder for.
    """
    decoding = get_quantizer(weight.quantizer).decoding
    builder = _GRAPH_BUILDERS.get(type(decoding))
    if builder is None:
        known = sorted(kind.__name__ for kind in _GRAPH_BUILDERS)
        raise OnnxExportError(f"quantizer {weight.quantizer!r}: no integer ONNX decoding for {decoding!r}; known decodings: {known}")
    return builder(decoding, name, weight)


def _dequantize_linear(decoding: DequantizeLinear, name: str, weight: QuantizedWeight) -> DecodeGraph:
    """`(code - zero_point) * scale` per output channel (or per tensor) as one DequantizeLinear."""
    codes = weight.codes.numpy().astype(np.int64)
    scale = weight.side["scale"].numpy().astype(np.float32)
    if "zero_point" in weight.side:
        zero_point = weight.side["zero_point"].numpy().astype(np.int64)
    else:
        zero_point = np.full(scale.shape, 2 ** (weight.bits - 1) - 1, dtype=np.int64)
    container = _container(codes, zero_point, weight.bits)
    if container is None:  # a zero point outside the unsigned range: store signed levels instead
        codes = codes - zero_point.reshape(-1, *[1] * (codes.ndim - 1))
        zero_point = np.zeros_like(zero_point)
        container = _container(codes, zero_point, weight.bits, signed=True)
    per_tensor = scale.size == 1  # one scale for the whole tensor (or a single channel)
    if per_tensor:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    tensors = [
        numpy_helper.from_array(codes.astype(container.numpy_type), f"{name}.codes"),
        numpy_helper.from_array(scale, f"{name}.scale"),
        numpy_helper.from_array(zero_point.astype(container.numpy_type), f"{name}.zero_point"),
    ]
    attributes = {} if per_tensor else {"axis": 0}
    node = helper.make_node(
        "DequantizeLinear", [f"{name}.codes", f"{name}.scale", f"{name}.zero_point"], [name],
        name=f"{name}/DequantizeLinear", **attributes,
    )
    return [node], tensors


def _scaled_table(decoding: ScaledTable, name: str, weight: QuantizedWeight) -> DecodeGraph:
    """Levels that are a fixed table times a per-channel side tensor (plus a per-channel offset)."""
    multiplier, offset = decoding.multiplier, decoding.offset
    unit_side = {multiplier: torch.ones(1)}
    if offset is not None:
        unit_side[offset] = torch.zeros(1)
    every_code = torch.arange(2**weight.bits, dtype=torch.uint8).reshape(1, -1)
    table = get_quantizer(weight.quantizer).dequantize(QuantizedWeight(weight.quantizer, weight.bits, every_code, unit_side))
    nodes, tensors = _gather(name, weight, table.reshape(-1).numpy(), output=f"{name}.levels")
    channel_shape = (-1, *[1] * (weight.codes.dim() - 1))
    tensors.append(numpy_helper.from_array(weight.side[multiplier].numpy().reshape(channel_shape), f"{name}.{multiplier}"))
    scaled = f"{name}.scaled" if offset is not None else name
    nodes.append(helper.make_node("Mul", [f"{name}.levels", f"{name}.{multiplier}"], [scaled], name=f"{name}/Mul"))
    if offset is not None:
        tensors.append(numpy_helper.from_array(weight.side[offset].numpy().reshape(channel_shape), f"{name}.{offset}"))
        nodes.append(helper.make_node("Add", [scaled, f"{name}.{offset}"], [name], name=f"{name}/Add"))
    return nodes, tensors


def _codebook_lookup(decoding: CodebookLookup, name: str, weight: QuantizedWeight) -> DecodeGraph:
    """`codebook[group of channel][code]`: one Gather over the stacked codebooks."""
    codebooks = weight.side["codebook"].numpy().astype(np.float32).reshape(-1, 2**weight.bits)
    channels = weight.codes.shape[0]
    group_offsets = None
    if codebooks.shape[0] > 1:  # contiguous, near-equal runs of channels, as `CodebookLookup` states
        groups = np.arange(channels) * codebooks.shape[0] // channels
        group_offsets = (groups * 2**weight.bits).reshape(-1, *[1] * (weight.codes.dim() - 1))
    return _gather(name, weight, codebooks.reshape(-1), output=name, index_offsets=group_offsets)


def _gather(
    name: str,
    weight: QuantizedWeight,
    table: np.ndarray,
    output: str,
    index_offsets: np.ndarray | None = None,
) -> DecodeGraph:
    """`table[codes (+ offsets)]`: the codes in their container, widened to int64 indices for Gather."""
    codes = weight.codes.numpy().astype(np.int64)
    container = _container(codes, np.zeros(1, dtype=np.int64), weight.bits)
    tensors = [
        numpy_helper.from_array(codes.astype(container.numpy_type), f"{name}.codes"),
        numpy_helper.from_array(table.astype(np.float32), f"{name}.table"),
    ]
    nodes = [helper.make_node("Cast", [f"{name}.codes"], [f"{name}.indices"], to=TensorProto.INT64, name=f"{name}/Cast")]
    indices = f"{name}.indices"
    if index_offsets is not None:
        tensors.append(numpy_helper.from_array(index_offsets.astype(np.int64), f"{name}.group_offsets"))
        nodes.append(helper.make_node("Add", [indices, f"{name}.group_offsets"], [f"{name}.table_indices"], name=f"{name}/Add"))
        indices = f"{name}.table_indices"
    nodes.append(helper.make_node("Gather", [f"{name}.table", indices], [output], axis=0, name=f"{name}/Gather"))
    return nodes, tensors


_GRAPH_BUILDERS: dict[type[Decoding], Callable[[Any, str, QuantizedWeight], DecodeGraph]] = {
    DequantizeLinear: _dequantize_linear,
    ScaledTable: _scaled_table,
    CodebookLookup: _codebook_lookup,
}
"""Decoding kind -> the builder of its graph, called with the quantizer's decoding, the tensor name and the weight."""


def _container(codes: np.ndarray, zero_point: np.ndarray, bits: int, signed: bool = False) -> _Container | None:
    """The narrowest unsigned (or signed) ONNX integer type holding the codes and zero points.

    4-bit types only hold codes of 4 bits or fewer, so a 5-bit layer is never mistaken for a
    4-bit one because its codes happen to be small.
    """
    low = min(int(codes.min(initial=0)), int(zero_point.min(initial=0)))
    high = max(int(codes.max(initial=0)), int(zero_point.max(initial=0)))
    for container in _CONTAINERS:
        if (container.smallest < 0) != signed or container.bits < bits:
            continue
        if container.smallest <= low and high <= container.largest:
            return container
    return None


def _source_initializers(
    tensor: str, producers: Mapping[str, onnx.NodeProto], initializers: Mapping[str, onnx.TensorProto]
) -> list[onnx.TensorProto]:
    """Initializers that `tensor` is computed from (itself included), following producer nodes."""
    return [initializers[name] for name in _upstream(tensor, producers, lambda name: name in initializers)]


def _upstream(tensor: str, producers: Mapping[str, onnx.NodeProto], wanted: Callable[[str], bool]) -> list[str]:
    """The `wanted` tensors that `tensor` is computed from (itself included), following producer
    nodes back from it and stopping at each `wanted` tensor found."""
    found, pending, seen = [], [tensor], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if wanted(name):
            found.append(name)
        elif name in producers:
            pending.extend(producers[name].input)
    return found


__all__ = ["OPSET", "WEIGHT_INPUTS", "OnnxExportError", "WeightStorage", "export_onnx", "input_dependent", "unused_layers", "weight_storage"]
