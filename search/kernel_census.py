"""Which kernel onnxruntime runs each quantized layer on, against what the bundle's runtime expects.

The cost model prices a layer by the kernel its runtime (`hwcost.runtimes`) says runs it: an
integer kernel (`INT8`), a float kernel on weights decoded from codes on every run
(`FLOAT_DECODED`), or a float kernel on constant float weights (`FLOAT`, codes folded to float
when the session loads). The census asks onnxruntime itself: it writes the optimised graph
(`optimized_graph`) and, for every layer, finds the nodes that consume the layer's weights and
classifies each by its op type and by how the weights reach it.

Finding a layer's weights after optimisation. Every layer's weights enter the exported graph as
tensors whose names contain `<layer>.weight` (the codes `<layer>.weight.codes`, the decoded
`<layer>.weight`; `onnxruntime.quantization` writes `<layer>.weight_quantized`), and
onnxruntime's transformers keep that name in what they derive from it (ConvBNFusion writes
`ConvBnFusion_W_<layer>.weight`, QDQ fusion hands `<layer>.weight_quantized` to the QLinearConv,
constant folding keeps the output name of the subgraph it folds). So a constant tensor carries
the layers its name contains, and those its computing nodes read; a tensor with neither (an
LSTM's W and R, folded from Slice/Concat nodes into `/lstm/Unsqueeze_output_0`) carries what the
same name carried in the graph before optimisation. The one transformer that drops the name is
the NCHWc layout transformer (`reorder_token_N`), so the census runs the default level with it
switched off: it only re-lays out 2-D float convolutions on constant float weights (its
`TransformConv` returns early for anything else), so it never turns a kernel from integer to
float or back, and a float kernel's class does not depend on its layout.

A node consumes a layer's weights when one of its inputs carries the layer and another is an
activation (computed from the graph's inputs); the decode nodes on the way (DequantizeLinear,
Gather, Slice, ...) read constants only and are not counted. The node's op type gives its variant
where the op decides it (`KERNEL_RULES`: the integer kernels, MatMulNBits); any other node is a
float kernel, on constant weights when what it reads of the layer are initializers, else on
weights decoded on every run.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime

from hwcost.calibration.measure import session_options
from hwcost.runtimes import FLOAT, FLOAT_DECODED, INT8
from search.checks import Check
from search.onnx_export import input_dependent

INTEGER_KERNELS = frozenset(
    {
        "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat", "MatMulInteger16", "DynamicQuantizeLSTM", "QAttention", "QLinearConvTranspose",
    }
)  # fmt: skip
"""Op types of onnxruntime kernels that multiply integer weights by integer activations (ONNX's
and the com.microsoft and NHWC domains' schemas, as `onnxruntime.capi` lists them)."""

_INT8_ACCURACY_LEVEL = 4
"""MatMulNBits' `accuracy_level` at which it quantizes its activations to int8 (its schema: 0
unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)."""


def _integer_kernel(node: onnx.NodeProto) -> str:
    return INT8


def _block_quantized_matmul(node: onnx.NodeProto) -> str:
    """MatMulNBits, which onnxruntime fuses a DequantizeLinear -> MatMul into (a Linear layer on
    a 3-D input): it reads the codes itself on every run and computes in int8 at the accuracy
    level that allows it, in float otherwise."""
    level = next((attribute.i for attribute in node.attribute if attribute.name == "accuracy_level"), 0)
    return INT8 if level == _INT8_ACCURACY_LEVEL else FLOAT_DECODED


KERNEL_RULES: dict[str, Callable[[onnx.NodeProto], str]] = {
    **dict.fromkeys(INTEGER_KERNELS, _integer_kernel),
    "MatMulNBits": _block_quantized_matmul,
}
"""Op type -> the variant a node of that type runs, for kernels whose op decides it. Every other
node consuming a layer's weights (Conv, Gemm, LSTM, FusedConv, FusedGemm, NchwcConv, ...) is a
float kernel, on constant weights or on weights decoded by other nodes on every run."""

OPTIMIZATION_LEVEL = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
"""onnxruntime's default level, the one `hwcost.runtimes` states its rules for and sessions run at."""

RENAMING_TRANSFORMERS = ("NchwcTransformer",)
"""Transformers switched off for the census: they rename the weights they rewrite (see above)."""

VARIANT_LABELS = {INT8: "integer", FLOAT_DECODED: "float on weights decoded per run", FLOAT: "float on constant weights"}
"""How each kernel variant reads in a report."""
MIXED = "mixed"
"""A layer whose weights feed kernels of more than one variant (a shared weight, run twice)."""


@dataclass(frozen=True)
class LayerKernels:
    """The nodes of the optimised graph that consume one layer's weights.

    Attributes:
        layer: The layer's name.
        ops: Op type of each consuming node, in graph order.
        variants: Their variants (`INT8`, `FLOAT_DECODED`, `FLOAT`).
    """

    layer: str
    ops: tuple[str, ...]
    variants: frozenset[str]

    @property
    def variant(self) -> str:
        """The variant every consuming node runs, or `MIXED`."""
        return next(iter(self.variants)) if len(self.variants) == 1 else MIXED

    def merged(self, other: LayerKernels) -> LayerKernels:
        """Both layers' kernels under this one's name (layers that share their weights)."""
        return LayerKernels(self.layer, self.ops + other.ops, self.variants | other.variants)


def optimized_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The graph onnxruntime's CPU provider runs, as it writes it after optimisation (the
    renaming transformers off)."""
    options = session_options()
    options.graph_optimization_level = OPTIMIZATION_LEVEL
    with tempfile.TemporaryDirectory(prefix="search-kernel-census-") as folder:
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        onnxruntime.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"],
            disabled_optimizers=list(RENAMING_TRANSFORMERS),
        )  # fmt: skip
        return onnx.load(options.optimized_model_filepath)


def kernel_census(graph: onnx.ModelProto, layers: Collection[str]) -> dict[str, LayerKernels]:
    """How onnxruntime runs each of `layers` (those it runs: a layer found nowhere is absent)."""
    before = _carried_layers(graph.graph, layers, {})
    optimized = optimized_graph(graph).graph
    carried = _carried_layers(optimized, layers, before)
    activations = input_dependent(optimized)
    constants = {tensor.name for tensor in optimized.initializer}
    found: dict[str, LayerKernels] = {}
    for node in optimized.node:
        if not any(name in activations for name in node.input):
            continue
        for layer in frozenset().union(*(carried.get(name, frozenset()) for name in node.input)):
            kernels = LayerKernels(layer, (node.op_type,), frozenset({_variant(node, layer, carried, constants)}))
            found[layer] = found[layer].merged(kernels) if layer in found else kernels
    return found


def integer_kernel_check(runtime: str, expected: Mapping[str, str], census: Mapping[str, LayerKernels]) -> Check:
    """Passes when every layer `runtime` runs as an integer kernel (`expected[layer] == INT8`)
    runs as one in onnxruntime; the detail counts how the layers run (and those that run
    otherwise than the runtime prices them).

    Args:
        runtime: The `hwcost.runtimes` name the bundle runs on.
        expected: Layer -> the variant the runtime's lowering gives it, for every layer to count.
        census: `kernel_census`'s answer (or one entry per group of layers sharing weights).
    """
    name = "integer kernels where the runtime prices them"
    ran = {layer: census[layer].variant if layer in census else "" for layer in expected}
    integer = [layer for layer, variant in expected.items() if variant == INT8]
    missing = [layer for layer in integer if ran[layer] != INT8]
    if missing:
        shown = "; ".join(f"{layer}: {_ran(census.get(layer))}" for layer in missing[:3])
        priced = f"{len(missing)} of {len(integer)} layer(s) priced as integer kernels do not run as one"
        return Check(name, False, f"{runtime}: {priced}: {shown}")
    counts = Counter(ran.values())
    runs = ", ".join(f"{counts[variant]} {label}" for variant, label in VARIANT_LABELS.items())
    extra = [f"{counts[variant]} {variant or 'not located'}" for variant in (MIXED, "") if counts[variant]]
    other = sum(1 for layer, variant in ran.items() if variant not in (expected[layer], ""))
    unlike = f"; {other} run otherwise than {runtime} prices them" if other else ""
    detail = f"{runtime}: {len(integer)} of {len(expected)} layer(s) expected as integer kernels; onnxruntime runs {runs}"
    return Check(name, True, detail + "".join(f", {item}" for item in extra) + unlike)


def _variant(node: onnx.NodeProto, layer: str, carried: Mapping[str, frozenset[str]], constants: Collection[str]) -> str:
    """The op's own variant (`KERNEL_RULES`), or a float kernel's: on constant weights when every
    input carrying `layer` is an initializer (folded at load), else on weights decoded every run."""
    if node.op_type in KERNEL_RULES:
        return KERNEL_RULES[node.op_type](node)
    folded = all(name in constants for name in node.input if layer in carried.get(name, ()))
    return FLOAT if folded else FLOAT_DECODED


def _ran(kernels: LayerKernels | None) -> str:
    if kernels is None:
        return "no node of the optimised graph reads its weights"
    return f"{'/'.join(dict.fromkeys(kernels.ops))} ({kernels.variant})"


def _carried_layers(
    graph: onnx.GraphProto, layers: Collection[str], before: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """Layer names each constant tensor of `graph` carries (see the module docstring): those its
    name contains and its computing nodes read, or else those the same name carried `before`."""
    activations = input_dependent(graph)
    carried: dict[str, frozenset[str]] = {}

    def carry(name: str, upstream: frozenset[str]) -> None:
        carried[name] = (_named_layers(name, layers) | upstream) or before.get(name, frozenset())

    for tensor in graph.initializer:
        carry(tensor.name, frozenset())
    for node in graph.node:  # ONNX nodes are in topological order
        if not any(name in activations for name in node.input):
            upstream = frozenset().union(*(carried.get(name, frozenset()) for name in node.input))
            for output in node.output:
                carry(output, upstream)
    return carried


def _named_layers(tensor: str, layers: Collection[str]) -> frozenset[str]:
    """The layers whose `<layer>.weight` the tensor's name contains, not as the tail of a longer
    module path (`voiceprint.embedding.weight` is not `embedding`'s) nor of a longer layer's name."""
    named = set()
    for layer in layers:
        marker = f"{layer}.weight"
        start = tensor.find(marker)
        while start > 0 and (tensor[start - 1].isalnum() or tensor[start - 1] == "."):
            start = tensor.find(marker, start + 1)
        if start >= 0:
            named.add(layer)
    return frozenset(layer for layer in named if not any(other != layer and other.endswith(layer) for other in named))


__all__ = [
    "INTEGER_KERNELS",
    "KERNEL_RULES",
    "MIXED",
    "OPTIMIZATION_LEVEL",
    "RENAMING_TRANSFORMERS",
    "VARIANT_LABELS",
    "LayerKernels",
    "integer_kernel_check",
    "kernel_census",
    "optimized_graph",
]
