"""Calibration and validation measured with onnxruntime on this machine (small shapes, short timing)."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from hwcost import CostModel, get_runtime, load_target
from hwcost.calibration.backends import get_backend
from hwcost.calibration.calibrate import calibrate, write_profile
from hwcost.calibration.cases import TABLE_CODES, Grid, calibration_cases, micro_case
from hwcost.calibration import measure
from hwcost.calibration.measure import TimingPlan, measure_peak_memory, reference_graph, session_options, time_graphs
from hwcost.estimator import FITTED
from hwcost.kernels import DEFAULT_SPILL, DEQUANTIZE_OP, QUANTIZE_OP
from hwcost.liveness import live_bytes
from search.cli import main
from search.onnx_export import export_onnx
from spaces.describe import describe_model

FAST = TimingPlan(warmup_runs=1, min_runs=3, min_cpu_seconds=0.0)
TINY_GRID = Grid(
    tdnn=((8, 8, 3, 1, 20), (16, 16, 1, 1, 20)), pointwise=(), temporal=(), depthwise=(), residual2d=(),
    dense=((16, 8, 1),), recurrent=(), decoder=(), elementwise=(),
)  # fmt: skip


class _Chain(nn.Sequential):
    """Layers over one `[1, channels, frames]` input, as a micro-benchmark case builds them."""

    def __init__(self, *layers: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__(*layers)
        self.shape = shape

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(self.shape),)


def _conv_bn_relu() -> _Chain:
    return _Chain(nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(), shape=(1, 8, 20))


def _linear(features: int) -> _Chain:
    return _Chain(nn.Linear(features, features), shape=(1, features))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    calibration = calibrate(get_backend("onnxruntime-fp32", export_onnx), TINY_GRID, "tiny", timing=FAST)
    return write_profile(calibration, tmp_path_factory.mktemp("profile") / "host.yaml")


def test_calibration_on_a_small_grid_writes_a_loadable_profile_with_provenance(calibrated):
    profile = load_target(calibrated)
    assert profile.runtime == "onnxruntime-fp32"
    assert {"conv1d/fp32", "linear/fp32", "inference/fp32"} <= set(profile.kernel_costs)
    assert profile.memory.fixed_bytes > 0
    provenance = profile.calibration["provenance"]
    assert provenance["onnxruntime_version"] == onnxruntime.__version__
    assert {"cpu", "date", "threads", "cases"} <= set(provenance)
    assert {"median_relative_iqr", "worst_relative_iqr", "timed_again"} <= set(profile.calibration["noise"])
    assert profile.step_spill == DEFAULT_SPILL  # the tiny grid has no recurrent steps to fit a ramp on
    assert profile.simd_width_bits == measure.host_hardware().get("simd_width_bits", load_target("x86-avx2").simd_width_bits)
    description = get_backend("onnxruntime-fp32", export_onnx).prepare(calibration_cases(TINY_GRID)[0]).description
    estimate = CostModel().estimate(description, profile)
    assert estimate.layers[0].bound == FITTED and estimate.latency_ms > 0


def test_validate_prints_json_with_the_summary_and_every_model(calibrated, capsys):
    assert main(["hwcost", "validate", "--target", str(calibrated), "--set", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"within_10pct", "within_25pct", "spearman", "models"} <= set(report)
    assert [model["name"] for model in report["models"]] == ["xvector-c32", "ge2e-h64-l2"]
    for model in report["models"]:
        assert model["measured_ms"] > 0 and model["predicted_ms"] > 0 and model["measured_peak_bytes"] > 0
        assert model["error"] == pytest.approx(model["predicted_ms"] / model["measured_ms"] - 1)
    assert 0 <= report["within_10pct"] <= report["within_25pct"] <= 1
    assert not math.isnan(report["spearman"])


def test_runtimes_without_a_backend_or_profiles_of_another_isa_are_refused(capsys):
    assert main(["hwcost", "calibrate", "--runtime", "packed-kernels", "--grid", "small"]) == 2
    assert "modelled only" in capsys.readouterr().err
    assert main(["hwcost", "validate", "--target", "cortex-a72", "--set", "tiny"]) == 2
    assert "cannot be validated here" in capsys.readouterr().err


def _optimized_graph(graph: onnx.ModelProto, folder: Path) -> onnx.GraphProto:
    """`graph` as onnxruntime runs it, after its graph optimisations."""
    options = session_options()
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath).graph


def _optimized_nodes(graph: onnx.ModelProto, folder: Path) -> list[onnx.NodeProto]:
    return list(_optimized_graph(graph, folder).node)


def _optimized_ops(graph: onnx.ModelProto, folder: Path) -> collections.Counter:
    return collections.Counter(node.op_type for node in _optimized_nodes(graph, folder))


@pytest.mark.parametrize(
    ("runtime", "weight_only", "present", "absent"),
    [
        ("onnxruntime-fp32", ("uniform", 8), {"FusedConv"}, {"DequantizeLinear", "BatchNormalization"}),
        ("onnxruntime-int8", ("uniform", 8), {"QLinearConv"}, {"Conv", "FusedConv"}),
        ("onnxruntime-weight-only", ("uniform", 8), {"DequantizeLinear", "BatchNormalization"}, set()),
        ("onnxruntime-weight-only", TABLE_CODES, {"FusedConv"}, {"Gather", "DequantizeLinear", "BatchNormalization"}),
    ],
)
def test_each_backend_gives_onnxruntime_the_graph_its_runtime_prices(runtime, weight_only, present, absent, tmp_path):
    """A Conv1d -> BatchNorm -> ReLU chain: float folds and fuses, int8 fuses to QLinearConv,
    uniform codes keep a per-run DequantizeLinear (and their batch norm), table codes fold at load."""
    case = micro_case("conv-bn-relu", _conv_bn_relu, weight_only=weight_only)
    ops = _optimized_ops(get_backend(runtime, export_onnx).prepare(case).graph, tmp_path)
    assert present <= set(ops), ops
    assert not absent & set(ops), ops


def test_peak_memory_grows_with_the_weights_a_session_holds():
    backend = get_backend("onnxruntime-fp32", export_onnx)
    small = backend.prepare(micro_case("small", lambda: _linear(64)))
    large = backend.prepare(micro_case("large", lambda: _linear(2048)))
    added_weight_bytes = (2048 * 2048 - 64 * 64) * 4
    growth = measure_peak_memory(large.graph, large.feeds).peak_bytes - measure_peak_memory(small.graph, small.feeds).peak_bytes
    assert growth >= 0.9 * added_weight_bytes


def test_times_are_kept_relative_to_the_load_reference():
    """Timing the load reference against itself gives a ratio near one, whatever the load; a
    ratio turns back into milliseconds at any reference speed."""
    timing = time_graphs([reference_graph()], TimingPlan(warmup_runs=2, min_runs=20, min_cpu_seconds=0.0, rounds=2))[0]
    assert 0.7 < timing.ratio < 1.4
    assert timing.reference_ms > 0 and timing.runs >= 40
    assert timing.at_reference(2.0) == pytest.approx(2.0 * timing.ratio)


def test_separator_cases_hold_every_blocks_hidden_output_until_the_skip_sum():
    channels, hidden, frames = 8, 16, 50
    grid = dataclasses.replace(TINY_GRID, tdnn=(), dense=(), separator=((channels, hidden, frames),))
    runtime = get_runtime("onnxruntime-fp32")
    live = {}
    for case in calibration_cases(grid):
        model = case.model().eval()
        description = describe_model(model, "microbench", model.example_inputs(16000), 16000)
        live[case.name] = live_bytes(runtime.lower(description))
    shallow, deep = grid.separator_depths
    # onnxruntime runs the skip convolutions after the last block: each block more holds one more hidden output
    extra = live[f"separator-{channels}x{hidden}x{frames}-d{deep}"] - live[f"separator-{channels}x{hidden}x{frames}-d{shallow}"]
    assert extra == (deep - shallow) * hidden * frames * 4


@pytest.mark.parametrize(("grid_key", "transposes_frames"), [("frames", False), ("stems", True)])
def test_int8_frames_reach_a_1d_convolution_as_they_come_and_a_2d_one_transposed(grid_key, transposes_frames, tmp_path):
    """What `frame_major_readers` prices: onnxruntime's channels-last 1-D QLinearConv reads the
    quantized frames directly (the model's transpose cancels), a 2-D one reads them through a
    Transpose; and the lowering runs the model's layout layer exactly when the graph does."""
    grid = dataclasses.replace(TINY_GRID, tdnn=(), dense=(), **{grid_key: ((8, 8, 20),)})
    case = next(case for case in calibration_cases(grid, stem_pairs=True) if case.name.startswith(("frames-", "layout-")))
    prepared = get_backend("onnxruntime-int8", export_onnx).prepare(case)
    nodes = _optimized_nodes(prepared.graph, tmp_path)
    writers = {output: node for node in nodes for output in node.output}
    first_conv = next(node for node in nodes if node.op_type == "QLinearConv")
    feeding = []
    node = writers.get(first_conv.input[0])
    while node is not None and node.op_type != "QuantizeLinear":
        feeding.append(node.op_type)
        node = writers.get(node.input[0])
    assert ("Transpose" in feeding) == transposes_frames, feeding
    layout = get_runtime("onnxruntime-int8").lower(prepared.description).layers[0]
    assert layout.layer.kind == "layout"
    assert [kernel.op for kernel in layout.kernels] == (["quantize", "layout"] if transposes_frames else [])


def test_only_a_backend_that_asks_for_them_times_the_stem_pairs():
    grid = dataclasses.replace(TINY_GRID, tdnn=(), dense=(), stems=((8, 8, 20),))
    paired = {case.name for case in calibration_cases(grid, stem_pairs=True)}
    assert paired == {"layout-8x8x20", "stem-8x8x20"}
    assert not calibration_cases(grid)
    assert get_backend("onnxruntime-int8", export_onnx).stem_pairs and not get_backend("onnxruntime-fp32", export_onnx).stem_pairs


@pytest.mark.parametrize(
    ("runtime", "weight_only"),
    [("onnxruntime-fp32", ("uniform", 8)), ("onnxruntime-int8", ("uniform", 8)), ("onnxruntime-weight-only", ("uniform", 8)),
     ("onnxruntime-weight-only", TABLE_CODES)],
)  # fmt: skip
def test_the_2d_convolutions_a_runtime_prices_as_blocked_are_the_ones_onnxruntime_runs_in_nchwc(runtime, weight_only, tmp_path):
    """`Kernel.blocked` against the graph onnxruntime runs: float 2-D convolutions on constant
    weights (folded table codes included) become NCHWc convolutions, at 24 channels too (padded
    to the block); per-run decoded and integer ones do not."""
    grid = dataclasses.replace(TINY_GRID, tdnn=(), dense=(), residual2d=((24, 24, 8, 1, 10),), depths=(1, 1))
    case = dataclasses.replace(calibration_cases(grid)[0], weight_only=weight_only)
    prepared = get_backend(runtime, export_onnx).prepare(case)
    nodes = _optimized_nodes(prepared.graph, tmp_path)
    nchwc = [node for node in nodes if node.domain == "com.microsoft.nchwc" and "Conv" in node.op_type]
    kernels = [kernel for lowered in get_runtime(runtime).lower(prepared.description).layers for kernel in lowered.kernels]
    blocked = [kernel.blocked for kernel in kernels if kernel.op == "conv2d"]
    assert blocked and all(blocked) == bool(nchwc) and any(blocked) == bool(nchwc), (blocked, [n.op_type for n in nchwc])


@pytest.mark.parametrize(("flags", "width"), [(["avx2", "fma", "avx512f"], 512), (["avx2", "fma"], 256), ([], None)])
def test_a_calibrated_profile_takes_the_hosts_vector_width(flags, width, monkeypatch):
    """The channel block of NCHWc kernels is the host's float lanes, not the base profile's."""
    monkeypatch.setattr(measure, "cpu_flags", lambda: flags)
    assert measure.host_hardware().get("simd_width_bits") == width


_QDQ_GRID = dataclasses.replace(
    TINY_GRID, tdnn=((8, 8, 3, 1, 20),), dense=(), temporal=((8, 16, 1, 20),), decoder=((16, 4, 40),), elementwise=((8, 20),)
)


@pytest.mark.parametrize(
    "prefix", ["tdnn-", "temporal-", "decoder-", "batchnorm-", "groupnorm-", "prelu-", "relu-", "sigmoid-", "softmax-"]
)
def test_the_int8_lowering_converts_activations_where_onnxruntime_runs_a_quantize_or_dequantize(prefix, tmp_path):
    """Against the QDQ graph onnxruntime runs: per case, as many QuantizeLinear and DequantizeLinear
    nodes on activations as the lowering prices conversion kernels, at both depths. A batch norm
    or group norm (ops the quantizer quantizes, with no QLinear kernel) is entered and left
    through a pair even between float kernels and at the graph's ends; a PReLU is not."""
    runtime = get_runtime("onnxruntime-int8")
    backend = get_backend("onnxruntime-int8", export_onnx)
    cases = [case for case in calibration_cases(_QDQ_GRID) if case.name.startswith(prefix)]
    assert cases
    for case in cases:
        prepared = backend.prepare(case)
        optimized = _optimized_graph(prepared.graph, tmp_path)
        constants = {tensor.name for tensor in optimized.initializer}
        graph_counts = collections.Counter(
            node.op_type for node in optimized.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] not in constants
        )  # fmt: skip
        lowering = runtime.lower(prepared.description)
        kernels = [kernel for lowered in lowering.layers for kernel in lowered.kernels] + list(lowering.fixed)
        priced = collections.Counter(kernel.op for kernel in kernels)
        expected = (graph_counts["QuantizeLinear"], graph_counts["DequantizeLinear"])
        assert (priced[QUANTIZE_OP], priced[DEQUANTIZE_OP]) == expected, case.name
