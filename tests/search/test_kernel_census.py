import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from hwcost.calibration.backends import get_backend
from hwcost.calibration.cases import TABLE_CODES, UNIFORM_CODES, micro_case
from hwcost.runtimes import FLOAT, FLOAT_DECODED, INT8, get_runtime
from search.kernel_census import integer_kernel_check, kernel_census
from search.onnx_export import export_onnx

LAYERS = ["conv2d", "conv1d", "linear"]


class ConvThenLinear(nn.Module):
    """A 2-D and a 1-D convolution and a linear layer on pooled features, as the speaker models have them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(1, 8, 3, padding=1)
        self.conv1d = nn.Conv1d(8, 16, 3, padding=1)
        self.linear = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = torch.relu(self.conv2d(x)).mean(dim=2)
        return self.linear(torch.relu(self.conv1d(frames)).mean(dim=2))

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(1, 1, 12, 40),)


def _prepared(runtime, weight_only=UNIFORM_CODES):
    """The tiny model as `runtime` runs it: statically quantized to QDQ by onnxruntime.quantization
    (int8), or exported with its codes decoded in the graph (weight-only, as bundles are)."""
    case = micro_case("conv-then-linear", ConvThenLinear, weight_only=weight_only)
    return get_backend(runtime, export_onnx).prepare(case)


def _expected(prepared, runtime):
    return {item.layer.name: item.variant for item in get_runtime(runtime).lower(prepared.description).layers if item.layer.params}


@pytest.fixture(scope="module")
def int8():
    return _prepared("onnxruntime-int8")


@pytest.fixture(scope="module")
def weight_only():
    return _prepared("onnxruntime-weight-only")


def test_a_qdq_graph_runs_every_conv_and_linear_layer_on_integer_kernels(int8):
    census = kernel_census(int8.graph, LAYERS)
    assert {layer: kernels.variant for layer, kernels in census.items()} == dict.fromkeys(LAYERS, INT8)
    assert census["conv2d"].ops == ("QLinearConv",) and census["linear"].ops == ("QGemm",)
    check = integer_kernel_check("onnxruntime-int8", _expected(int8, "onnxruntime-int8"), census)
    assert check.passed and check.detail.startswith("onnxruntime-int8: 3 of 3 layer(s) expected as integer kernels")


def test_weight_only_codes_run_float_kernels_decoded_per_run_or_folded(weight_only):
    decoded = kernel_census(weight_only.graph, LAYERS)
    assert {layer: kernels.variant for layer, kernels in decoded.items()} == dict.fromkeys(LAYERS, FLOAT_DECODED)
    table = _prepared("onnxruntime-weight-only", TABLE_CODES)
    folded = kernel_census(table.graph, LAYERS)  # the 2-D convolution's weights would be NCHWc-reordered
    assert {layer: kernels.variant for layer, kernels in folded.items()} == dict.fromkeys(LAYERS, FLOAT)
    check = integer_kernel_check("onnxruntime-weight-only", _expected(weight_only, "onnxruntime-weight-only"), decoded)
    assert check.passed
    assert check.detail == (
        "onnxruntime-weight-only: 0 of 3 layer(s) expected as integer kernels; onnxruntime runs 0 integer, "
        "3 float on weights decoded per run, 0 float on constant weights"
    )


def test_float_kernels_where_integer_ones_are_priced_fail_naming_the_layers(int8, weight_only):
    census = kernel_census(weight_only.graph, LAYERS)
    check = integer_kernel_check("onnxruntime-int8", _expected(int8, "onnxruntime-int8"), census)
    assert not check.passed
    assert "3 of 3 layer(s) priced as integer kernels do not run as one" in check.detail
    assert "conv2d: FusedConv (fp32-decoded)" in check.detail and "linear: Gemm (fp32-decoded)" in check.detail
    missing = integer_kernel_check("onnxruntime-int8", {"absent": INT8}, census)
    assert not missing.passed and "absent: no node of the optimised graph reads its weights" in missing.detail


def _graph(nodes, initializers, inputs=("x",)):
    graph = helper.make_graph(
        nodes, "census", [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16]) for name in inputs],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None) for node in nodes], initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("accuracy_level, variant", [(4, INT8), (0, FLOAT_DECODED)])
def test_matmul_nbits_is_integer_only_when_it_quantizes_its_activations(accuracy_level, variant):
    codes = numpy_helper.from_array(np.full((4, 1, 16), 128, np.uint8), "linear.weight.codes")
    scale = numpy_helper.from_array(np.ones(4, np.float32), "linear.weight.scale")
    node = helper.make_node(
        "MatMulNBits", ["x", codes.name, scale.name], ["y"], domain="com.microsoft", K=16, N=4, bits=8, block_size=16,
        accuracy_level=accuracy_level,
    )  # fmt: skip
    census = kernel_census(_graph([node], [codes, scale]), ["linear"])
    assert census["linear"].variant == variant


def test_a_layer_is_not_found_in_a_longer_module_path_ending_with_its_name():
    names = ("embedding", "voiceprint.embedding")
    weights = [numpy_helper.from_array(np.ones((4, 16), np.float32), f"{name}.weight") for name in names]
    nodes = [
        helper.make_node("Gemm", ["x", "embedding.weight"], ["a"], transB=1),
        helper.make_node("Gemm", ["x", "voiceprint.embedding.weight"], ["b"], transB=1),
    ]
    census = kernel_census(_graph(nodes, weights), names)
    assert census["embedding"].ops == ("Gemm",) and census["voiceprint.embedding"].ops == ("Gemm",)
    assert census["embedding"].variant == FLOAT
