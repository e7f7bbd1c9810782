"""The integer (QDQ) form of an exported graph: what lets onnxruntime run its layers on integer kernels.

`search.onnx_export` dispatches here when the model quantizes its activations to
`INTEGER_ACTIVATION_BITS` (frozen `ActivationQuantizer`s, placed by
`spaces.quant.integer_activations`). onnxruntime fuses `DequantizeLinear -> Conv/Gemm/MatMul ->
QuantizeLinear` into QLinearConv or QGemm when the weight is a constant int8 (or uint8)
DequantizeLinear, and a ReLU before the QuantizeLinear into its output range. Measured on
onnxruntime 1.32 (x86): a batch norm between the layer and its QuantizeLinear, a missing output
QuantizeLinear, or weights decoded from UINT4 codes leave the float kernel; a float bias is
quantized by onnxruntime itself, rounded to the step of the kernel's int32 accumulator (input step
times weight scale): with the requantization's float32 rounding, the one way the kernels differ
from the in-run model. So, for each layer that qualifies:

- its weight becomes int8 levels times a per-output-channel scale in one DequantizeLinear
  (`Quantizer.integer_weight`, exact: the levels times the scale are the in-run weights bit for
  bit), in an INT8 initializer `<layer>.weight.levels`, sub-8-bit codes widened to 8-bit containers
  (weights.bin keeps them packed at their bits);
- the batch norm right after it is folded into that scale and the bias (`scale * gamma /
  sqrt(var + eps)`, a channel with a negative factor negating its levels): the levels stay the
  in-run ones, only float rounding differs;
- activation pairs on signed grids are written as uint8 with zero point 128 (the same values:
  onnxruntime's x86 kernels take uint8 activations times int8 weights).

A layer qualifies when its quantizer writes its codes exactly as int8 levels within the range the
kernels multiply without saturating (`Quantizer.runs_on_integer_kernels`: uniform symmetric
grids, `-reduced` at 8 bits, power-of-two up to 4 bits, static binary) and its weight feeds only
convolutions (input 1), Gemm (input 1) or a Transpose into MatMul. Every other quantized layer
keeps the weight-only decode of `search.onnx_export` (a k-means codebook, adaptive binarization's
offset, a full-range 8-bit grid, a transposed convolution, an LSTM), and the reason is recorded
in the graph's metadata (`IntegerRecord.of(graph)` reads it). A weight shared by several layers
keeps the batch norms after them unfolded (one scale cannot fold two norms): those layers stay
float kernels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from spaces.quant import INTEGER_KERNEL_LEVEL, IntegerWeight, QuantizedWeight, get_quantizer

_INTEGER_CONSUMERS = {"Conv": 1, "Gemm": 1}
"""Operators onnxruntime fuses with a quantized weight, by the input the weight feeds."""
_FOLDABLE = {"Conv", "Gemm"}
"""Operators a batch norm on their output folds into (per output channel along axis 1)."""
_UNSIGNED_CENTRE = 128
"""Zero point of a signed 8-bit activation grid written as uint8: the same values, shifted."""
_ACTIVATION_ZERO_POINT = "activation.zero_point.uint8"


METADATA_KEY = "integer_kernel_layers"
"""Graph metadata of an integer export: `IntegerRecord` as JSON."""


@dataclass(frozen=True)
class IntegerRecord:
    """What an integer export wrote, as the graph's metadata keeps it.

    Attributes:
        integer: Layers written as int8 levels for integer kernels.
        weight_only: Layer -> why it keeps the weight-only decode.
    """

    integer: tuple[str, ...]
    weight_only: dict[str, str]

    @classmethod
    def of(cls, graph: onnx.ModelProto) -> IntegerRecord | None:
        """The record of `graph`; None for a graph exported with float activations."""
        value = next((entry.value for entry in graph.metadata_props if entry.key == METADATA_KEY), None)
        if value is None:
            return None
        record = json.loads(value)
        return cls(tuple(record["integer"]), dict(record["weight_only"]))


@dataclass(frozen=True)
class IntegerLayers:
    """Which quantized layers an integer export writes as int8 levels, and why the others are not.

    Attributes:
        weights: Layer -> its weight as int8 levels times a per-channel scale.
        weight_only: Layer -> why it keeps the weight-only decode.
    """

    weights: dict[str, IntegerWeight]
    weight_only: dict[str, str]

    def metadata(self) -> onnx.StringStringEntryProto:
        record = {"integer": sorted(self.weights), "weight_only": dict(sorted(self.weight_only.items()))}
        return onnx.StringStringEntryProto(key=METADATA_KEY, value=json.dumps(record))


def integer_layers(
    graph: onnx.ModelProto,
    quantized: Mapping[str, QuantizedWeight],
    layers: set[str],
    largest_level: int = INTEGER_KERNEL_LEVEL,
) -> IntegerLayers:
    """Decide, for each of `layers` (quantized layers whose `<layer>.weight` the traced graph holds), how it is written.

    Args:
        graph: The traced float graph.
        quantized: Layer -> its quantized weight.
        layers: The layers the export writes (not pruned, not a shared weight's second user).
        largest_level: The largest weight level the target's kernels multiply without saturating
            (`INTEGER_KERNEL_LEVEL` for any x86 CPU; 127 only for targets whose kernels accumulate in int32, VNNI or AMX).
    """
    consumers = _consumers(graph.graph)
    weights, weight_only = {}, {}
    for layer in sorted(layers):
        weight = quantized[layer]
        quantizer = get_quantizer(weight.quantizer)
        largest = quantizer.largest_integer_level(weight.bits)
        if largest is None or largest > largest_level:
            weight_only[layer] = (
                f"{weight.bits}-bit {weight.quantizer} has no exact int8 form"
                if largest is None
                else f"{weight.bits}-bit {weight.quantizer} levels reach ±{largest}, beyond the kernels' ±{largest_level}"
            )
            continue
        feeds = _unfusable_consumers(f"{layer}.weight", consumers)
        if feeds:
            weight_only[layer] = f"its weight feeds {', '.join(sorted(feeds))} (no integer kernel)"
            continue
        weights[layer] = quantizer.integer_weight(weight)
    return IntegerLayers(weights, weight_only)


def int8_decode(name: str, weight: IntegerWeight) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """`DequantizeLinear(levels, scale, 0, axis=0)` computing tensor `name`, one scale per output channel."""
    levels = weight.levels.numpy()
    channels = levels.shape[0]
    scale = np.broadcast_to(weight.scale.numpy().astype(np.float32), (channels,)).copy()
    tensors = [
        numpy_helper.from_array(levels.astype(np.int8), f"{name}.levels"),
        numpy_helper.from_array(scale, f"{name}.scale"),
        numpy_helper.from_array(np.zeros(channels, dtype=np.int8), f"{name}.zero_point"),
    ]
    node = helper.make_node(
        "DequantizeLinear", [f"{name}.levels", f"{name}.scale", f"{name}.zero_point"], [name], name=f"{name}/DequantizeLinear", axis=0
    )
    return [node], tensors


def finish_integer_graph(graph: onnx.ModelProto, integer: IntegerLayers) -> None:
    """Fold the batch norms after the int8 layers, write signed activation pairs as uint8, record the layers."""
    for layer in integer.weights:
        _fold_batch_norm(graph.graph, f"{layer}.weight")
    _unsigned_activations(graph.graph)
    graph.metadata_props.append(integer.metadata())


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """Tensor -> the (node, input index) pairs that read it."""
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, index))
    return readers


def _unfusable_consumers(tensor: str, consumers: Mapping[str, list[tuple[onnx.NodeProto, int]]]) -> set[str]:
    """Operators reading `tensor` that onnxruntime would not fuse with it as a weight (a Transpose into MatMul is fine)."""
    unfusable = set()
    for node, index in consumers.get(tensor, []):
        if node.op_type == "Transpose":
            unfusable |= {reader.op_type for reader, _ in consumers.get(node.output[0], []) if reader.op_type != "MatMul"}
        elif _INTEGER_CONSUMERS.get(node.op_type) != index:
            unfusable.add(node.op_type)
    return unfusable


def _fold_batch_norm(graph: onnx.GraphProto, weight: str) -> None:
    """Fold the BatchNormalization that alone reads the output of the one Conv/Gemm reading `weight`."""
    consumers = _consumers(graph)
    users = consumers.get(weight, [])
    if len(users) != 1 or users[0][0].op_type not in _FOLDABLE:
        return  # a shared weight, or a MatMul: its norm stays
    layer_node = users[0][0]
    if layer_node.op_type == "Gemm" and not _plain_gemm(layer_node):
        return
    readers = consumers.get(layer_node.output[0], [])
    outputs = {value.name for value in graph.output}
    if len(readers) != 1 or readers[0][0].op_type != "BatchNormalization" or layer_node.output[0] in outputs:
        return
    norm = readers[0][0]
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    bias_name = layer_node.input[2] if len(layer_node.input) > 2 and layer_node.input[2] else None
    constants = [_constant(name, initializers, producers) for name in (*norm.input[1:5], *([bias_name] if bias_name else []))]
    if any(value is None for value in constants):
        return
    gamma, beta, mean, variance, *bias = (value.astype(np.float64) for value in constants)
    epsilon = next((attribute.f for attribute in norm.attribute if attribute.name == "epsilon"), 1e-5)
    factor = gamma / np.sqrt(variance + epsilon)
    bias = bias[0] if bias else np.zeros_like(mean)
    levels, scale = initializers[f"{weight}.levels"], initializers[f"{weight}.scale"]
    level_values = numpy_helper.to_array(levels).copy()
    negative = factor < 0
    level_values[negative] = -level_values[negative]  # symmetric levels: their negation stays in range
    _replace(graph, levels, numpy_helper.from_array(level_values, levels.name))
    folded_scale = (numpy_helper.to_array(scale).astype(np.float64) * np.abs(factor)).astype(np.float32)
    _replace(graph, scale, numpy_helper.from_array(folded_scale, scale.name))
    folded_bias = numpy_helper.from_array(((bias - mean) * factor + beta).astype(np.float32), f"{weight.removesuffix('.weight')}.folded_bias")
    graph.initializer.append(folded_bias)
    if bias_name:
        layer_node.input[2] = folded_bias.name
    else:
        layer_node.input.append(folded_bias.name)
    layer_node.output[0] = norm.output[0]  # the layer now computes what the norm did
    graph.node.remove(norm)
    _drop_unread(graph)


def _constant(name: str, initializers: Mapping[str, onnx.TensorProto], producers: Mapping[str, onnx.NodeProto]) -> np.ndarray | None:
    """The value of tensor `name` when it is an initializer, possibly behind Identity nodes (the
    TorchScript exporter shares equal initializers that way); None otherwise."""
    while name not in initializers and name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    return numpy_helper.to_array(initializers[name]) if name in initializers else None


def _plain_gemm(node: onnx.NodeProto) -> bool:
    """A Gemm computing `x @ W.T + b` (what a linear layer exports as), whose output channels are W's rows."""
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    return attributes.get("transB", 0) == 1 and attributes.get("transA", 0) == 0 and attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0


def _replace(graph: onnx.GraphProto, old: onnx.TensorProto, new: onnx.TensorProto) -> None:
    graph.initializer.remove(old)
    graph.initializer.append(new)


def _drop_unread(graph: onnx.GraphProto) -> None:
    """Remove the nodes whose outputs nothing reads (the folded norm's Identity inputs), then the
    initializers nothing reads."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(output in read for output in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in read]:
        graph.initializer.remove(tensor)


def _unsigned_activations(graph: onnx.GraphProto) -> None:
    """Activation Q/DQ pairs with an int8 zero point 0 read a uint8 zero point 128 instead (same values)."""
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    signed_zero_points = {
        name
        for name, node in constants.items()
        if (value := numpy_helper.to_array(node.attribute[0].t)).dtype == np.int8 and value.size == 1 and int(value.reshape(-1)[0]) == 0
    }
    rewritten = False
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in signed_zero_points:
            node.input[2] = _ACTIVATION_ZERO_POINT
            rewritten = True
    if rewritten:
        graph.initializer.append(numpy_helper.from_array(np.array(_UNSIGNED_CENTRE, dtype=np.uint8), _ACTIVATION_ZERO_POINT))
        unused = [constants[name] for name in signed_zero_points if not any(name in node.input for node in graph.node)]
        for node in unused:
            graph.node.remove(node)


__all__ = ["METADATA_KEY", "IntegerLayers", "IntegerRecord", "finish_integer_graph", "int8_decode", "integer_layers"]
