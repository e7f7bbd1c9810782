"""`search verify`: check a bundle's ONNX graph against its PyTorch model, and time it.

Checks, each passed or failed with its figures:

- the ONNX graph is valid and every quantized layer reaches its operator as integer codes (an
  integer initializer decoded in the graph), not as float weights;
- then, per task (`_TASK_CHECKS`), onnxruntime against the PyTorch model `load_bundle` rebuilds
  from config.json + weights.bin:
  - speaker verification, on the evaluation set: every utterance's ONNX embedding has cosine
    >= `MIN_COSINE` with the PyTorch one, and the EERs of the two sets of embeddings differ by
    at most `MAX_EER_DIFFERENCE` (0.1 points);
  - speaker extraction, on the test mixtures: the mean SI-SDRi of the two sets of estimates
    differ by at most `MAX_SI_SDRI_DIFFERENCE` (0.1 dB); the largest sample difference of the
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

import numpy as np
import onnx
import onnxruntime
import torch
from google.protobuf.message import DecodeError
from rich.console import Console
from rich.table import Table

from evaluators.data.mixture_corpora import evaluation_mixtures
from evaluators.data.source_features import EvalSet, load_eval_set
from evaluators.extraction_training import extract
from evaluators.training import embed_utterances
from evaluators.verification import fbank_config
from hwcost import CostModel
from search.config import ConfigError, RunConfig, load_config
from search.export import si_sdri_per_mixture
from search.onnx_export import unused_layers, weight_storage
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from spaces.bundle import ONNX_FILE, Bundle, BundleError, example_inputs, load_bundle

MIN_COSINE = 0.999
MAX_EER_DIFFERENCE = 0.001
"""0.1 percentage points, as a fraction."""
MAX_SI_SDRI_DIFFERENCE = 0.1
"""dB, between the mean SI-SDRi of PyTorch's and onnxruntime's estimates."""
HOST_TARGET = "x86-avx2"
"""Cost-model profile compared with the measured latency by default (the x86 machines tests run on)."""
_LATENCY_MIN_RUNS = 20
_WARMUP_RUNS = 3


@dataclass(frozen=True)
class Check:
    """One verification check and what it found."""

    name: str
    passed: bool
    detail: str


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
    config = _run_config(bundle, data)
    unused = unused_layers(bundle.model, example_inputs(bundle.config), list(bundle.quantized))
    checks = [_valid_graph(graph), _integer_weights(graph, bundle, unused)]
    try:
        session = _session(graph, threads=None)
    except Exception as error:  # onnxruntime raises a different pybind type per failure
        checks.append(Check("onnxruntime loads the graph", False, _one_line(error)))
        return VerificationReport(bundle.path, tuple(checks), None)
    checks += _TASK_CHECKS[bundle.config.task](bundle, session, config, progress)
    return VerificationReport(bundle.path, tuple(checks), _latency(bundle, graph, target, timing_seconds))


def print_verification(report: VerificationReport, console: Console) -> None:
    """The checks as a table, then the measured latency beside the prediction."""
    table = Table(title=f"verify {report.bundle}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]", check.detail)
    console.print(table)
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
            problems.append(f"{layers[0]}: its weight feeds no Conv/Gemm/MatMul in the graph")
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


def _verification_checks(
    bundle: Bundle,
    session: onnxruntime.InferenceSession,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None,
) -> list[Check]:
    """Embedding agreement per utterance and EER agreement on the evaluation set."""
    eval_set = _eval_set(bundle, config, progress)
    (input_name,) = [spec.name for spec in bundle.config.inputs]
    reference = embed_utterances(bundle.model, eval_set.features).numpy()
    exported = np.concatenate([session.run(None, {input_name: features[None].numpy()})[0] for features in eval_set.features])
    cosines = _cosines(reference, exported)
    worst = int(np.argmin(cosines))
    cosine_check = Check(
        f"embedding cosine >= {MIN_COSINE} on every utterance",
        bool(cosines.min() >= MIN_COSINE),
        f"{len(cosines)} utterances of {eval_set.name!r}; lowest {cosines.min():.6f} (utterance {worst}), "
        f"median {np.median(cosines):.6f}",
    )
    max_trials = config.evaluation.max_trials
    reference_eer = eval_set.metrics(reference, max_trials, config.seed).eer
    exported_eer = eval_set.metrics(exported, max_trials, config.seed).eer
    difference = abs(reference_eer - exported_eer)
    eer_check = Check(
        f"EER within {100 * MAX_EER_DIFFERENCE:.1f} percentage points",
        difference <= MAX_EER_DIFFERENCE,
        f"PyTorch {100 * reference_eer:.3f}%, onnxruntime {100 * exported_eer:.3f}% (difference {100 * difference:.3f} points)",
    )
    return [cosine_check, eer_check]


def _extraction_checks(
    bundle: Bundle,
    session: onnxruntime.InferenceSession,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None,
) -> list[Check]:
    """Mean SI-SDRi agreement on the run's test mixtures, with the largest sample difference."""
    if progress:
        progress("test mixtures", 0, 1)
    mixtures = evaluation_mixtures(config.mixtures, config.data.eval[0].source, config.data.sample_rate, config.cache_dir)
    if progress:
        progress("test mixtures", 1, 1)
    mixture_input, enrollment_input = [spec.name for spec in bundle.config.inputs]
    with torch.no_grad():
        reference = [estimate.numpy() for estimate in extract(bundle.model, mixtures)]
    exported = [
        session.run(None, {mixture_input: example.mixture[None], enrollment_input: example.enrollment[None]})[0][0]
        for example in mixtures
    ]
    largest = max(float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else np.inf
                  for ours, theirs in zip(reference, exported))  # fmt: skip
    if not np.isfinite(largest):
        return [Check(f"SI-SDRi within {MAX_SI_SDRI_DIFFERENCE} dB", False, "onnxruntime's estimates have other lengths")]
    reference_si_sdri, exported_si_sdri = (
        si_sdri_per_mixture([torch.from_numpy(estimate) for estimate in estimates], mixtures)
        for estimates in (reference, exported)
    )
    difference = abs(reference_si_sdri.mean() - exported_si_sdri.mean())
    worst = np.abs(reference_si_sdri - exported_si_sdri).max()
    return [Check(
        f"SI-SDRi within {MAX_SI_SDRI_DIFFERENCE} dB",
        bool(difference <= MAX_SI_SDRI_DIFFERENCE),
        f"{len(mixtures)} test mixtures; PyTorch {reference_si_sdri.mean():.3f} dB, onnxruntime {exported_si_sdri.mean():.3f} dB "
        f"(difference {difference:.4f} dB, at most {worst:.4f} dB on one mixture); estimates differ by at most {largest:.2e}",
    )]  # fmt: skip


_TASK_CHECKS: dict[str, Callable[..., list[Check]]] = {
    "verification": _verification_checks,
    "extraction": _extraction_checks,
}
"""Task -> its agreement checks between PyTorch and onnxruntime."""


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
    fbank = fbank_config(config)
    found = (fbank.num_mel_bins, fbank.frame_length_ms, fbank.frame_shift_ms, fbank.sample_rate)
    wanted = (expected.num_mel_bins, expected.frame_length_ms, expected.frame_shift_ms, bundle.config.sample_rate)
    if found != wanted:
        raise ConfigError(
            f"{path}: features (mel bins, window ms, hop ms, sample rate) {found} differ from the bundle's {wanted}"
        )
    return config


def _eval_set(bundle: Bundle, config: RunConfig, progress: Callable[[str, int, int], None] | None) -> EvalSet:
    """The evaluation set named in the bundle (the config's first one when it has no such set)."""
    wanted = bundle.config.evaluation.get("eval_set")
    chosen = next((item for item in config.data.eval if item.name == wanted), config.data.eval[0])
    report = (lambda done, total: progress(f"{chosen.name} features", done, total)) if progress else None
    return load_eval_set(chosen, fbank_config(config), config.cache_dir, config.evaluation.max_trials, config.seed, report)


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


def _cosines(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `first` with the same row of `second`."""
    first, second = first.astype(np.float64), second.astype(np.float64)
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.einsum("ij,ij->i", first, second) / np.where(norms > 0, norms, 1.0)


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
