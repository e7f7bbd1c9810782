"""`search verify`: check a bundle's ONNX graph against its PyTorch model, and time it.

Checks, each passed or failed with its figures:

- the ONNX graph is valid and every quantized layer reaches its operator as integer codes (an
  integer initializer decoded in the graph), not as float weights (an LSTM's gate matrices
  through the nodes that reorder them into ONNX's gate order: `weight_storage`);
- onnxruntime runs on an integer kernel every layer the bundle's runtime prices as one
  (`search.kernel_census`: the nodes of onnxruntime's optimised graph that read each layer's
  weights; a weight-only bundle expects none and the check reports the counts);
- then the task's agreement checks (`Task.agreement_checks`), onnxruntime against the PyTorch
  model `load_bundle` rebuilds from config.json + weights.bin:
  - speaker verification, on the evaluation set: every utterance's ONNX embedding has cosine
    >= `MIN_COSINE` with the PyTorch one, and the EERs of the two sets of embeddings differ by
    at most `MAX_EER_DIFFERENCE`;
  - speaker extraction, on the test mixtures: the mean SI-SDRi of the two sets of estimates
    differ by at most `MAX_SI_SDRI_DIFFERENCE`; the largest sample difference of the
    estimates is reported beside it.

Beside the checks, onnxruntime's latency for one second of audio on one thread of this machine
is measured next to the cost model's prediction for a target profile (by default `x86-avx2`)
priced with the runtime the bundle runs on, and a gap beyond the cost model's stated accuracy is
flagged as a warning (`search.latency_comparison`).
The test data is what the bundle was measured on, read from the run the bundle came from or from
another run config (`--data`) of the same task; its feature settings and sample rate must be the
bundle's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime
from google.protobuf.message import DecodeError
from rich.console import Console
from rich.table import Table

from hwcost import get_runtime, load_target
from search.checks import Check
from search.config import ConfigError, RunConfig, load_config
from search.bundle_runtime import bundle_runtime
from search.kernel_census import LayerKernels, integer_kernel_check, kernel_census
from search.latency_comparison import LatencyComparison, compare_latency, stated_accuracy
from search.onnx_export import WEIGHT_INPUTS, unused_layers, weight_storage
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from search.tasks import UnknownTaskError, get_task
from search.tasks.extraction_bundle import MAX_SI_SDRI_DIFFERENCE
from search.tasks.verification_bundle import MAX_EER_DIFFERENCE, MIN_COSINE, feature_settings
from search.tasks.verification_setup import fbank_config
from spaces.bundle import CONFIG_FILE, ONNX_FILE, Bundle, BundleError, example_inputs, load_bundle
from spaces.description import ModelDescription

HOST_TARGET = "x86-avx2"
"""Cost-model profile compared with the measured latency by default (the x86 machines tests run on)."""


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
    accuracy: str | os.PathLike | None = None,
) -> VerificationReport:
    """Run every check of the bundle in `path` and time its ONNX model.

    Args:
        data: A run config (YAML) or run directory whose matching evaluation set to use; default
            the run the bundle was exported from.
        target: Cost-model profile (name or file) to set beside the measured latency.
        progress: Called with (stage, done, total) while features are built.
        timing_seconds: Least CPU time spent on timed inferences (`compare_latency`).
        accuracy: A `search hwcost validate --json` report of `target` for the bundle's runtime,
            the cost model's stated accuracy (`stated_accuracy`); default the widest bound.

    Raises:
        BundleError, ConfigError: The bundle, the data or the accuracy report cannot be read
            (not a failed check).
        ProfileError: `target` names no usable profile.
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
    profile = load_target(target)
    runtime = bundle_runtime(bundle.compressed.description, bundle.config.activation_bits)
    description = bundle.compressed.description
    tolerance = stated_accuracy(profile, runtime, bundle.config.family, accuracy)
    unused = unused_layers(bundle.model, example_inputs(bundle.config), list(bundle.quantized))
    checks = [_valid_graph(graph), _integer_weights(graph, bundle, unused)]
    try:
        session = _session(graph)
    except Exception as error:  # onnxruntime raises a different pybind type per failure
        checks.append(Check("onnxruntime loads the graph", False, _one_line(error)))
        return VerificationReport(bundle.path, tuple(checks), None, source)
    checks.append(_integer_kernels(graph, bundle, runtime, description, unused))
    checks += task.agreement_checks(bundle, session, config, progress)
    feeds = {name: tensor.numpy() for name, tensor in example_inputs(bundle.config).items()}
    latency = compare_latency(graph, feeds, description, profile, runtime, tolerance, timing_seconds)
    return VerificationReport(bundle.path, tuple(checks), latency, source)


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
        f"onnxruntime on this machine (1 thread, median CPU time of {latency.runs} runs at load-reference speed "
        f"{latency.reference_ms:.3f} ms, noise {latency.noise:.0%}): {latency.measured_ms:.3f} ms per second of audio; "
        f"cost model on {latency.target} with {latency.runtime}: {latency.predicted_ms:.3f} ms "
        f"(measured / predicted = {latency.ratio:.2f})"
    )
    tolerance = latency.tolerance
    if tolerance.bound is None:
        console.print(f"the gap is not judged: {tolerance.source}")
        return
    gap = f"the prediction's error (predicted / measured - 1) is {latency.error:+.0%}"
    accuracy = f"the cost model's stated accuracy +-{tolerance.bound:.0%} ({tolerance.source})"
    if latency.beyond_tolerance:
        console.print(f"[yellow]warning:[/] {gap}, beyond {accuracy}")
    else:
        console.print(f"{gap}, within {accuracy}")


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
    groups = _weight_groups(bundle)
    pruned = [layers for layers in groups if set(layers) <= unused and not any(layer in storage for layer in layers)]
    for layers in groups:
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


def _integer_kernels(
    graph: onnx.ModelProto, bundle: Bundle, runtime: str, description: ModelDescription, unused: set[str]
) -> Check:
    """The layers `runtime` prices as integer kernels (lowering `description`) run as integer
    kernels in onnxruntime (`integer_kernel_check`), counted once per set of layers sharing
    weights; layers the outputs do not depend on are not in the graph and not counted."""
    census = kernel_census(graph, list(bundle.quantized))
    variants = {item.layer.name: item.variant for item in get_runtime(runtime).lower(description).layers}
    groups = [layers for layers in _weight_groups(bundle) if not set(layers) <= unused]
    expected = {layers[0]: variants[layers[0]] for layers in groups}
    found = {layers[0]: [census[layer] for layer in layers if layer in census] for layers in groups}
    merged = {owner: functools.reduce(LayerKernels.merged, kernels) for owner, kernels in found.items() if kernels}
    return integer_kernel_check(runtime, expected, merged)


def _weight_groups(bundle: Bundle) -> list[list[str]]:
    """The quantized layers grouped by the weights they share (a layer owning its own: a group of one)."""
    groups: dict[int, list[str]] = {}
    for layer, weight in bundle.quantized.items():
        groups.setdefault(id(weight), []).append(layer)
    return list(groups.values())


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


def _session(graph: onnx.ModelProto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


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
