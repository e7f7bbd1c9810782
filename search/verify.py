"""`search verify`: check a bundle's ONNX graph against its PyTorch model, and time it.

Checks, each passed or failed with its figures:

- the ONNX graph is valid and every quantized layer reaches its operator as integer codes (an
  integer initializer decoded in the graph), not as float weights (an LSTM's gate matrices
  through the nodes that reorder them into ONNX's gate order: `weight_storage`);
- then the task's agreement checks (`Task.agreement_checks`), onnxruntime against the PyTorch
  model `load_bundle` rebuilds from config.json + weights.bin:
  - speaker verification, on the evaluation set: every utterance's ONNX embedding has cosine
    >= `MIN_COSINE` with the PyTorch one, and the EERs of the two sets of embeddings differ by
    at most `MAX_EER_DIFFERENCE`;
  - speaker extraction, on the test mixtures: the mean SI-SDRi of the two sets of estimates
    differ by at most `MAX_SI_SDRI_DIFFERENCE`; the largest sample difference of the
    estimates is reported beside it.

Beside the checks, onnxruntime's latency for one second of audio on one thread of this machine
is measured next to the cost model's prediction for a target profile (by default `x86-avx2`).
The test data is what the bundle was measured on, read from the run the bundle came from or from
another run config (`--data`) of the same task; its feature settings and sample rate must be the
bundle's.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime
from google.protobuf.message import DecodeError
from rich.console import Console
from rich.table import Table

from hwcost import CostModel
from search.checks import Check
from search.config import ConfigError, RunConfig, load_config
from search.onnx_export import WEIGHT_INPUTS, unused_layers, weight_storage
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from search.tasks import UnknownTaskError, get_task
from search.tasks.extraction_bundle import MAX_SI_SDRI_DIFFERENCE
from search.tasks.verification_bundle import MAX_EER_DIFFERENCE, MIN_COSINE, feature_settings
from search.tasks.verification_setup import fbank_config
from spaces.bundle import CONFIG_FILE, ONNX_FILE, Bundle, BundleError, example_inputs, load_bundle

HOST_TARGET = "x86-avx2"
"""Cost-model profile compared with the measured latency by default (the x86 machines tests run on)."""
_LATENCY_MIN_RUNS = 20
_WARMUP_RUNS = 3


@dataclass(frozen=True)
class LatencyComparison:
    """onnxruntime's measured latency beside the cost model's prediction, per second of audio.

    Attributes:
        measured_ms: Median wall time of one inference on one second of audio, one thread.
        fastest_ms: The fastest of those inferences (the least disturbed by other processes).
        runs: Timed inferences.
        target: Cost-model profile of the prediction.
        predicted_ms: The cost model's latency for the bundle's description on `target`.
    """

    measured_ms: float
    fastest_ms: float
    runs: int
    target: str
    predicted_ms: float


@dataclass(frozen=True)
class VerificationReport:
    """Every check of one bundle, and its latency."""

    bundle: Path
    checks: tuple[Check, ...]
    latency: LatencyComparison | None
    """None when onnxruntime could not load the graph."""
    data: str = ""
    """Where the test data came from: the bundle's own run, or the `--data` run or config."""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def verify_bundle(
    path: str | os.PathLike,
    data: str | os.PathLike | None = None,
    target: str = HOST_TARGET,
    progress: Callable[[str, int, int], None] | None = None,
    timing_seconds: float = 1.0,
) -> VerificationReport:
    """Run every check of the bundle in `path` and time its ONNX model.

    Args:
        data: A run config (YAML) or run directory whose matching evaluation set to use; default
            the run the bundle was exported from.
        target: Cost-model profile to set beside the measured latency.
        progress: Called with (stage, done, total) while features are built.
        timing_seconds: Least time spent timing inferences (at least 20 are timed).

    Raises:
        BundleError, ConfigError: The bundle or the data cannot be read (not a failed check).
    """
    bundle = load_bundle(path)
    onnx_path = bundle.path / ONNX_FILE
    if not onnx_path.is_file():
        raise BundleError(f"{onnx_path}: missing")
    try:
        graph = onnx.load(str(onnx_path))
    except DecodeError as error:
        raise BundleError(f"{onnx_path}: not an ONNX model ({error})") from None
    try:
        task = get_task(bundle.config.task)
    except UnknownTaskError as error:
        raise BundleError(f"{bundle.path / CONFIG_FILE}: {error}") from None
    config = _run_config(bundle, data)
    source = f"--data {data}" if data is not None else f"the bundle's run {bundle.config.source.get('run')}"
    unused = unused_layers(bundle.model, example_inputs(bundle.config), list(bundle.quantized))
    checks = [_valid_graph(graph), _integer_weights(graph, bundle, unused)]
    try:
        session = _session(graph, threads=None)
    except Exception as error:  # onnxruntime raises a different pybind type per failure
        checks.append(Check("onnxruntime loads the graph", False, _one_line(error)))
        return VerificationReport(bundle.path, tuple(checks), None, source)
    checks += task.agreement_checks(bundle, session, config, progress)
    return VerificationReport(bundle.path, tuple(checks), _latency(bundle, graph, target, timing_seconds), source)


def print_verification(report: VerificationReport, console: Console) -> None:
    """The checks as a table, then the measured latency beside the prediction."""
    table = Table(title=f"verify {report.bundle}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]", check.detail)
    console.print(table)
    console.print(f"test data: {report.data}")
    latency = report.latency
    if latency is None:
        return
    console.print(
        f"onnxruntime on this machine (1 thread, median of {latency.runs}, fastest {latency.fastest_ms:.3f}): "
        f"{latency.measured_ms:.3f} ms per second of audio; cost model on {latency.target}: {latency.predicted_ms:.3f} ms "
        f"(measured / predicted = {latency.measured_ms / latency.predicted_ms:.2f})"
    )


def _valid_graph(graph: onnx.ModelProto) -> Check:
    try:
        onnx.checker.check_model(graph, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        return Check("ONNX graph is valid", False, _one_line(error))
    opset = next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None)
    return Check("ONNX graph is valid", True, f"opset {opset}, {len(graph.graph.node)} nodes")


def _integer_weights(graph: onnx.ModelProto, bundle: Bundle, unused: set[str]) -> Check:
    """Every quantized layer (or the owner of its shared weights) is decoded from integer codes.

    Layers the outputs do not depend on (`unused`) are pruned from the graph and only counted.
    """
    storage = weight_storage(graph)
    problems, containers = [], set()
    groups: dict[int, list[str]] = {}
    for layer, weight in bundle.quantized.items():
        groups.setdefault(id(weight), []).append(layer)
    pruned = [layers for layers in groups.values() if set(layers) <= unused and not any(layer in storage for layer in layers)]
    for layers in groups.values():
        weight = bundle.quantized[layers[0]]
        found = [storage[layer] for layer in layers if layer in storage]
        if layers in pruned:
            continue
        if not found:
            problems.append(f"{layers[0]}: its weight feeds no {'/'.join(WEIGHT_INPUTS)} in the graph")
        elif not all(item.integer for item in found):
            problems.append(f"{layers[0]}: float weights in the graph ({weight.bits}-bit {weight.quantizer} in weights.bin)")
        elif any(item.shape != tuple(weight.codes.shape) for item in found):
            problems.append(f"{layers[0]}: codes of shape {found[0].shape}, weights.bin has {tuple(weight.codes.shape)}")
        else:
            containers.update(item.dtype for item in found)
    name = "quantized layers are integer weights in the graph"
    if problems:
        return Check(name, False, f"{len(problems)} of {len(groups)} layer(s): " + "; ".join(problems[:3]))
    unread = f", {len(pruned)} unused by the outputs (not in the graph)" if pruned else ""
    return Check(name, True, f"{len(groups) - len(pruned)} layer(s), containers {', '.join(sorted(containers)) or 'none'}{unread}")


def _run_config(bundle: Bundle, data: str | os.PathLike | None) -> RunConfig:
    """The run config whose evaluation set checks the bundle: `data`, or the bundle's own run."""
    source = Path(data) if data is not None else Path(str(bundle.config.source.get("run", "")))
    path = source / RUN_CONFIG_FILE if source.is_dir() else source
    if data is None and not path.is_file():
        raise BundleError(f"{bundle.path}: the run it came from ({source}) is gone; give its data with --data CONFIG")
    config = load_config(path)
    if config.task != bundle.config.task:
        raise ConfigError(f"{path}: a {config.task} run; the bundle holds a {bundle.config.task} model")
    expected = bundle.config.features
    if expected is None:  # raw audio: only the sample rate must agree
        if config.data.sample_rate != bundle.config.sample_rate:
            rates = f"sample rate {config.data.sample_rate} Hz differs from the bundle's {bundle.config.sample_rate} Hz"
            raise ConfigError(f"{path}: {rates}")
        return config
    fbank, settings = fbank_config(config), feature_settings(config)
    found = (
        settings.kind, fbank.num_mel_bins, fbank.frame_length_ms, fbank.frame_shift_ms, fbank.sample_rate, settings.windows,
    )
    wanted = (
        expected.kind, expected.num_mel_bins, expected.frame_length_ms, expected.frame_shift_ms, bundle.config.sample_rate,
        expected.windows,
    )
    if found != wanted:
        raise ConfigError(
            f"{path}: features (front-end, mel bins, window ms, hop ms, sample rate, partial windows) {found} differ "
            f"from the bundle's {wanted}"
        )
    return config


def _latency(bundle: Bundle, graph: onnx.ModelProto, target: str, seconds: float) -> LatencyComparison:
    """Median onnxruntime time for one second of audio on one thread, beside the cost model's."""
    session = _session(graph, threads=1)
    inputs = {name: tensor.numpy() for name, tensor in example_inputs(bundle.config).items()}
    for _ in range(_WARMUP_RUNS):
        session.run(None, inputs)
    timings = []
    started = time.perf_counter()
    while len(timings) < _LATENCY_MIN_RUNS or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        session.run(None, inputs)
        timings.append(1000.0 * (time.perf_counter() - begin))
    predicted = CostModel().estimate(bundle.compressed.description, target).latency_ms
    return LatencyComparison(statistics.median(timings), min(timings), len(timings), target, predicted)


def _session(graph: onnx.ModelProto, threads: int | None) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
    return onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


__all__ = [
    "HOST_TARGET",
    "MAX_EER_DIFFERENCE",
    "MAX_SI_SDRI_DIFFERENCE",
    "MIN_COSINE",
    "Check",
    "LatencyComparison",
    "VerificationReport",
    "print_verification",
    "verify_bundle",
]
