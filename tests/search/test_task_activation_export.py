"""Trials with quantized activations export and verify whatever trains them: the extractor's
fine-tuning, a distilled student, and verification's narrower (simulated) activation grids.

Each evaluator puts its activation quantizers inside the model, so the packed weights keep their
steps, the bundle rebuilds them, and at 8 bits onnxruntime runs every quantized convolution and
linear layer of the bundle on integer kernels."""

import collections

import onnx
import pytest

from hwcost import get_runtime
from hwcost.kernels import DEQUANTIZE_OP, QUANTIZE_OP
from hwcost.runtimes import INT8
from search.artifacts import read_artifact
from search.bundle_runtime import WEIGHT_ONLY_RUNTIME, bundle_runtime
from search.cli import main
from search.kernel_census import kernel_census, optimized_graph
from search.onnx_export import unused_layers
from search.verify import verify_bundle
from spaces import load_bundle
from spaces.bundle import ONNX_FILE, example_inputs
from spaces.quant.integer_activations import INTEGER_LAYER_TYPES, activation_quantizers
from test_distill_search import TINY as DISTILL
from test_extraction_search import TINY as EXTRACTION
from tiny_config import tiny_config
from tiny_run import write_measured_run

pytestmark = pytest.mark.usefixtures("single_thread")

EXTRACTION_SPACE = (
    'space: {{knobs: [{{name: bits, layers: ["*"], granularity: stage, bits: [8]}},'
    " {{name: activation_bits, choices: [8]}}]}}\n"
)
STUDENT_SPACE = """space:
  knobs:
    - {{name: student.width, choices: [0.5]}}
    - {{name: distill.taps, choices: [embedding]}}
    - {{name: bits.all, layers: ["*"], bits: [8]}}
    - {{name: activation_bits, choices: [8]}}
"""


def _replace_space(text: str, space: str) -> str:
    """`text` (a config template) with its `space:` block replaced by `space`."""
    head, _, rest = text.partition("space:")
    tail = rest[rest.index("\nfidelity:") + 1 :] if "\nfidelity:" in rest else rest[rest.index("\nsearch:") + 1 :]
    return head + space + tail


def _exported(root, text: str):
    """Trial 0 (every layer at 8 bits, the space's activation bits) of a measured run, exported."""
    _, run_dir = write_measured_run(root, text, {0: 8})
    out = root / "bundle"
    assert main(["export", str(run_dir.path), "--trial", "0", "--out", str(out)]) == 0
    return run_dir, out


def _integer_census(bundle_dir) -> tuple[list[str], dict[str, str]]:
    """The bundle's quantized convolution and linear layers its graph uses, and how onnxruntime runs each."""
    bundle = load_bundle(bundle_dir)
    graph = onnx.load(bundle_dir / ONNX_FILE)
    unused = unused_layers(bundle.model, example_inputs(bundle.config), list(bundle.quantized))
    integer = [
        layer for layer in bundle.quantized
        if isinstance(bundle.model.get_submodule(layer), INTEGER_LAYER_TYPES) and layer not in unused
    ]  # fmt: skip
    census = kernel_census(graph, list(bundle.quantized))
    return integer, {layer: census[layer].variant for layer in integer if layer in census}


@pytest.fixture(scope="module")
def extraction_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("extraction-int8")
    text = _replace_space(EXTRACTION.format(cache=root / "cache"), EXTRACTION_SPACE.format())
    return _exported(root, text)


@pytest.fixture(scope="module")
def student_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("student-int8")
    text = _replace_space(DISTILL.format(cache=root / "cache"), STUDENT_SPACE.format())
    return _exported(root, text)


def test_an_extraction_trial_with_8_bit_activations_exports_on_integer_kernels_and_verifies(extraction_bundle):
    run_dir, bundle_dir = extraction_bundle
    assert activation_quantizers(read_artifact(run_dir, 0).rebuild().model)  # the trial measured them
    bundle = load_bundle(bundle_dir)
    assert bundle.config.activation_bits == 8 and activation_quantizers(bundle.model)
    assert "decoder" in bundle.quantized  # a transposed convolution: quantized, but no integer kernel takes it
    integer, ran = _integer_census(bundle_dir)
    assert "decoder" not in integer and len(integer) >= 5
    assert ran == dict.fromkeys(integer, INT8)
    report = verify_bundle(bundle_dir, timing_seconds=0.05)
    assert report.passed, report.failures
    assert report.latency.runtime == "onnxruntime-int8"


def test_an_extraction_bundle_is_priced_no_conversion_its_graph_does_not_run(extraction_bundle):
    """The export quantizes activations only around integer layers: the int8 runtime prices no
    quantize or dequantize pair around a group norm or the decoder, which static quantization's
    graphs would have, so it prices no more conversions than onnxruntime runs."""
    _, bundle_dir = extraction_bundle
    bundle = load_bundle(bundle_dir)
    optimized = optimized_graph(onnx.load(bundle_dir / ONNX_FILE)).graph
    constants = {tensor.name for tensor in optimized.initializer}
    ran = collections.Counter(node.op_type for node in optimized.node if node.input and node.input[0] not in constants)
    description = bundle.compressed.description
    lowering = get_runtime(bundle_runtime(description, bundle.config.activation_bits)).lower(description)
    priced = collections.Counter(kernel.op for lowered in lowering.layers for kernel in lowered.kernels)
    priced.update(kernel.op for kernel in lowering.fixed)
    assert not description.quantized_float_io and any(layer.kind == "groupnorm" for layer in description.layers)
    assert 0 < priced[QUANTIZE_OP] <= ran["QuantizeLinear"] and 0 < priced[DEQUANTIZE_OP] <= ran["DequantizeLinear"]


def test_a_student_trial_with_8_bit_activations_exports_on_integer_kernels_and_verifies(student_bundle):
    run_dir, bundle_dir = student_bundle
    artifact = read_artifact(run_dir, 0)
    assert artifact.candidate["student.width"] == 0.5 and artifact.activation_bits == 8
    bundle = load_bundle(bundle_dir)
    assert bundle.config.activation_bits == 8 and activation_quantizers(bundle.model)
    integer, ran = _integer_census(bundle_dir)
    assert integer and ran == dict.fromkeys(integer, INT8)
    report = verify_bundle(bundle_dir, timing_seconds=0.05)
    assert report.passed, report.failures


def test_narrower_activations_are_measured_quantized_and_export_as_a_float_graph(tmp_path, tiny_cache_dir):
    space = "{knobs: [{name: bits.all, layers: ['*'], bits: [8]}, {name: activation_bits, choices: [4]}]}"
    run_dir, bundle_dir = _exported(tmp_path, tiny_config(tiny_cache_dir, space))
    measured = activation_quantizers(read_artifact(run_dir, 0).rebuild().model)
    bundle = load_bundle(bundle_dir)
    assert {quantizer.bits for quantizer in measured.values()} == {4}
    assert all(point.argument == 0 and point.module in bundle.quantized for point in measured)  # each quantized layer's input
    report = verify_bundle(bundle_dir, timing_seconds=0.05)
    assert report.passed, report.failures
    assert report.latency.runtime == WEIGHT_ONLY_RUNTIME  # no kernel here takes 4-bit activations
