"""Measuring a graph on this machine: latency as per-thread CPU time, peak memory in a fresh process.

Latency is the median per-thread CPU time (`time.thread_time`) of one `session.run` on one
onnxruntime thread (intra- and inter-op, sequential execution), so it runs on the calling
thread and the clock counts the inference only: unlike wall time it does not grow while other
processes hold the cores, which keeps it repeatable on a shared machine. It still grows with
their pressure on the shared caches and on a core's other hardware thread (by half on the
loaded 2-core development host), and that load drifts over minutes, so a calibration measured
in one period and a validation in another would disagree by it. So every round of timed runs is
bracketed by runs of a fixed load-reference graph (`reference_graph`: matrix products of fixed
shapes), and a graph's time is kept as its ratio to the reference's, the median over rounds
interleaved across the set; a graph whose rounds disagree is timed again until most of them
agree (`settled`), so that one round hit by a burst of load is outvoted rather than averaged in:
`Timing.at_reference(reference_ms)` turns it back into
milliseconds at one reference speed, the same for every measurement compared (a calibrated
profile records its own, `measured.provenance.reference_ms`). Noise is the median relative
interquartile range of the runs within a round, and the spread of the round ratios that agree.

Peak memory is measured by `hwcost.calibration.memory_probe` in a fresh interpreter per graph.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

_REPO_ROOT = Path(__file__).resolve().parents[2]
_PROBE_MODULE = "hwcost.calibration.memory_probe"
PROBE_ATTEMPTS = 3
"""Runs of a memory probe that other processes' signals kill before one is given up (a shared machine)."""
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
"""CPU features that decide which onnxruntime (MLAS) kernels run, recorded in a profile's provenance."""


@dataclass(frozen=True)
class TimingPlan:
    """How to time a graph: `rounds` times, each with warm-up runs, then at least `min_runs` and
    `min_cpu_seconds` of timed runs; then up to `extra_rounds` more while its rounds have not
    settled (`settled`)."""

    warmup_runs: int
    min_runs: int
    min_cpu_seconds: float
    rounds: int = 1
    extra_rounds: int = 0


CALIBRATION_TIMING = TimingPlan(warmup_runs=3, min_runs=15, min_cpu_seconds=0.1, rounds=2, extra_rounds=3)
VALIDATION_TIMING = TimingPlan(warmup_runs=3, min_runs=30, min_cpu_seconds=0.3, rounds=3, extra_rounds=3)

SETTLED_SPREAD = 0.10
"""Largest spread (largest ratio over the smallest, minus one) of the rounds that agree, for a
graph's rounds to have settled. A burst of load from other processes that hits a round's
reference runs and not the graph's (or the other way round) moves that round's ratio by tens of
percent on the shared development host; a third round outvotes it."""


REFERENCE_RUNS = 20
"""Runs of the load-reference graph before and after each round (its median is the round's reference)."""
_REFERENCE_SHAPE = (64, 256)
_REFERENCE_LAYERS = 2
_REFERENCE_SEED = 0


@dataclass(frozen=True)
class Timing:
    """CPU time of one inference relative to the load reference's, and its noise.

    Attributes:
        ratio: Median over the rounds of (median CPU time of one run) / (the reference's).
        reference_ms: Smallest reference median seen while timing it (its least loaded round).
        relative_iqr: Median over the rounds of the runs' interquartile range over their median.
        runs: Timed runs, all rounds together.
        round_spread: Largest round ratio over the smallest, minus one, over the rounds that agree
            when they settled (`settled`), else over all of them (0 for one round).
        rounds: Rounds timed, the planned ones and those timed again while unsettled.
        timed_again: Whether it took more rounds than planned to settle (or to give up).
    """

    ratio: float
    reference_ms: float
    relative_iqr: float
    runs: int
    round_spread: float = 0.0
    rounds: int = 1
    timed_again: bool = False

    def at_reference(self, reference_ms: float) -> float:
        """The CPU time of one inference, in ms, at the speed where the reference takes `reference_ms`."""
        return self.ratio * reference_ms


@dataclass(frozen=True)
class MemoryMeasurement:
    """VmHWM growth of a fresh process: from before session creation to after inference.

    Attributes:
        peak_bytes: After `memory_probe.PROBE_RUNS` inferences, over the baseline.
        loaded_bytes: After the session was created, over the baseline.
    """

    peak_bytes: int
    loaded_bytes: int


class MeasurementError(RuntimeError):
    """The memory probe failed; the message carries its error output."""


def session_options() -> onnxruntime.SessionOptions:
    """One thread, sequential execution; optimisation level and memory settings at their defaults."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return options


@dataclass(frozen=True)
class _Round:
    """One round of one graph: medians of its runs and of the bracketing reference runs, in seconds."""

    median: float
    reference: float
    relative_iqr: float
    runs: int


def reference_graph() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The load reference: `_REFERENCE_LAYERS` float matrix products with ReLU, fixed shapes and
    values, so that its CPU time tracks how much other processes slow this one down."""
    rng = np.random.default_rng(_REFERENCE_SEED)
    rows, width = _REFERENCE_SHAPE
    nodes, weights, tensor = [], [], "x"
    for index in range(_REFERENCE_LAYERS):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(onnx.numpy_helper.from_array(weight, f"w{index}"))
        nodes += [
            onnx.helper.make_node("MatMul", [tensor, f"w{index}"], [f"product{index}"]),
            onnx.helper.make_node("Relu", [f"product{index}"], [f"y{index}"]),
        ]
        tensor = f"y{index}"
    graph = onnx.helper.make_graph(
        nodes, "load_reference", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [rows, width])],
        [onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, [rows, width])], weights,
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    return model, {"x": rng.standard_normal((rows, width)).astype(np.float32)}


Graph = tuple[onnx.ModelProto, dict[str, np.ndarray]]
"""A graph and the feeds it is timed on."""


@dataclass(frozen=True)
class GraphSet:
    """Graphs timed with one plan (`time_graph_sets` times several sets together)."""

    graphs: Sequence[Graph]
    plan: TimingPlan


def time_graphs(graphs: Sequence[Graph], plan: TimingPlan, progress: Callable[[int, int], None] | None = None) -> list[Timing]:
    """The CPU time of one inference of each (graph, feeds) relative to the load reference's,
    timed in `plan.rounds` rounds interleaved across the graphs."""
    return time_graph_sets([GraphSet(graphs, plan)], progress)[0]


def time_graph_sets(sets: Sequence[GraphSet], progress: Callable[[int, int], None] | None = None) -> list[list[Timing]]:
    """`time_graphs` for several sets at once, each graph with its set's plan, per set in order.

    Every round runs each graph whose plan has that round, the sets interleaved in proportion to
    their sizes (a graph's place is its fractional position in its set). So the machine's load
    while one set is timed is its load while the others are: sets whose figures are compared with
    each other (a calibration grid and the models it is validated on) are not moved apart by load
    that drifts over the minutes between them, which the load reference alone does not undo (it
    is compute-bound, and load slows memory-bound graphs more).
    """
    positions = [(index + 0.5) / len(group.graphs) for group in sets for index in range(len(group.graphs))]
    entries = [(set_index, index) for set_index, group in enumerate(sets) for index in range(len(group.graphs))]
    order = [entry for _, entry in sorted(zip(positions, entries))]
    reference_model, reference_feeds = reference_graph()
    reference = _session(reference_model), reference_feeds
    _runs(*reference, max((group.plan.warmup_runs for group in sets), default=0))
    rounds: dict[tuple[int, int], list[_Round]] = {entry: [] for entry in order}

    def time_once(entry: tuple[int, int]) -> None:
        group = sets[entry[0]]
        graph, feeds = group.graphs[entry[1]]
        rounds[entry].append(_time_round(_session(graph), feeds, reference, group.plan))

    most_rounds = max((group.plan.rounds for group in sets), default=0)
    planned = [entry for count in range(most_rounds) for entry in order if sets[entry[0]].plan.rounds > count]
    for done, entry in enumerate(planned):
        if progress:
            progress(done, len(planned))
        time_once(entry)
    unsettled = _unsettled(rounds, sets)
    while unsettled:  # interleaved like the planned rounds, so that one burst of load does not hit every retry
        for entry in unsettled:
            time_once(entry)
        unsettled = _unsettled(rounds, sets)
    if progress:
        progress(len(planned), len(planned))
    return [
        [_timing(rounds[set_index, index], group.plan) for index in range(len(group.graphs))]
        for set_index, group in enumerate(sets)
    ]


def _unsettled(rounds: dict[tuple[int, int], list[_Round]], sets: Sequence[GraphSet]) -> list[tuple[int, int]]:
    """The graphs whose rounds have not settled and may be timed again, in timing order."""
    limits = [group.plan.rounds + group.plan.extra_rounds for group in sets]
    return [entry for entry, measured in rounds.items() if len(measured) < limits[entry[0]] and not settled(_ratios(measured))]


def agreeing(ratios: Sequence[float]) -> list[float]:
    """The most round ratios that lie within `SETTLED_SPREAD` of each other, sorted (of equally
    many, the group of the smallest ratios)."""
    ordered = sorted(ratios)
    best: list[float] = ordered[:1]
    for start, low in enumerate(ordered):
        group = [ratio for ratio in ordered[start:] if ratio <= low * (1 + SETTLED_SPREAD)]
        if len(group) > len(best):
            best = group
    return best


def settled(ratios: Sequence[float]) -> bool:
    """Whether more than half of the round ratios agree (`agreeing`): then their median is one of them."""
    return 2 * len(agreeing(ratios)) > len(ratios)


def _session(graph: onnx.ModelProto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _runs(session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray], count: int) -> list[float]:
    """CPU seconds of `count` runs."""
    timings = []
    for _ in range(count):
        started = time.thread_time()
        session.run(None, feeds)
        timings.append(time.thread_time() - started)
    return timings


def _time_round(
    session: onnxruntime.InferenceSession,
    feeds: dict[str, np.ndarray],
    reference: tuple[onnxruntime.InferenceSession, dict[str, np.ndarray]],
    plan: TimingPlan,
) -> _Round:
    """One round: warm-up, reference runs, the timed runs, reference runs again."""
    _runs(session, feeds, plan.warmup_runs)
    reference_timings = _runs(*reference, REFERENCE_RUNS)
    timings: list[float] = []
    while len(timings) < plan.min_runs or sum(timings) < plan.min_cpu_seconds:
        timings += _runs(session, feeds, 1)
    reference_timings += _runs(*reference, REFERENCE_RUNS)
    quartiles = statistics.quantiles(timings, n=4)
    median = statistics.median(timings)
    spread = (quartiles[2] - quartiles[0]) / median if median > 0 else 0.0
    return _Round(median, statistics.median(reference_timings), spread, len(timings))


def _ratios(rounds: Sequence[_Round]) -> list[float]:
    return [measured.median / measured.reference for measured in rounds]


def _timing(rounds: Sequence[_Round], plan: TimingPlan) -> Timing:
    ratios = _ratios(rounds)
    kept = agreeing(ratios) if settled(ratios) else ratios
    return Timing(
        ratio=statistics.median(ratios),
        reference_ms=min(measured.reference for measured in rounds) * 1e3,
        relative_iqr=statistics.median(measured.relative_iqr for measured in rounds),
        runs=sum(measured.runs for measured in rounds),
        round_spread=max(kept) / min(kept) - 1,
        rounds=len(rounds),
        timed_again=len(rounds) > plan.rounds,
    )


def reference_ms(timings: Sequence[Timing]) -> float:
    """The least loaded reference time seen over `timings`: the speed a set of measurements is
    expressed at when nothing else fixes it."""
    return min(timing.reference_ms for timing in timings)


def measure_peak_memory(graph: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> MemoryMeasurement:
    """Peak memory of one inference of `graph`, measured in a fresh process (`memory_probe`).

    Raises:
        MeasurementError: the probe failed.
    """
    with tempfile.TemporaryDirectory(prefix="hwcost-memory-") as folder:
        model_path, inputs_path = Path(folder) / "model.onnx", Path(folder) / "inputs.npz"
        onnx.save(graph, model_path)
        np.savez(inputs_path, **feeds)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        for _ in range(PROBE_ATTEMPTS):
            result = subprocess.run(
                [sys.executable, "-m", _PROBE_MODULE, str(model_path), str(inputs_path)],
                capture_output=True, text=True, env=environment, check=False,
            )  # fmt: skip
            if result.returncode >= 0:  # a probe killed by a signal from outside is run again
                break
    if result.returncode != 0:
        raise MeasurementError(f"memory probe failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    baseline = figures["baseline_bytes"]
    return MemoryMeasurement(figures["peak_bytes"] - baseline, figures["loaded_bytes"] - baseline)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, the platform's answer elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The `_CPU_FLAGS` this CPU has."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    flags = next((line.partition(":")[2].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), [])
    return [flag for flag in _CPU_FLAGS if flag in flags]


_CACHE_FOLDER = Path("/sys/devices/system/cpu/cpu0/cache")
_CACHE_KEYS = {("1", "Data"): "l1_kb", ("2", "Unified"): "l2_kb", ("3", "Unified"): "l3_kb"}
"""(level, type) of a cache in sysfs -> the profile key of its size."""
_VECTOR_FLAGS = (("avx512f", 512), ("avx2", 256))
"""CPU flag -> vector register width in bits, widest first (x86)."""


def host_hardware() -> dict[str, float]:
    """The hardware figures of this CPU a calibrated profile takes instead of its base profile's:
    the L1 data, L2 and L3 cache sizes of its first core, in KiB, as Linux reports them (sysfs),
    and its vector register width (`simd_width_bits`, from the AVX flags: the channel block of
    onnxruntime's NCHWc kernels); each absent where this host does not tell."""
    sizes: dict[str, float] = {}
    for index in sorted(_CACHE_FOLDER.glob("index*")) if _CACHE_FOLDER.is_dir() else []:
        level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
        size = (index / "size").read_text().strip()
        key = _CACHE_KEYS.get((level, kind))
        if key and size.endswith("K"):
            sizes[key] = float(size[:-1])
    flags = cpu_flags()
    width = next((bits for flag, bits in _VECTOR_FLAGS if flag in flags), None)
    return {**sizes, **({"simd_width_bits": width} if width else {})}


def host_provenance(runtime: str) -> dict[str, object]:
    """Where and how measurements are taken: CPU, runtime and versions, date, settings, machine load."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "runtime": runtime,
        "onnxruntime_version": onnxruntime.__version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "threads": 1,
        "latency": "median per-thread CPU time (time.thread_time) of one session.run, one onnxruntime thread",
        "peak_memory": "VmHWM after inference minus VmHWM before session creation, fresh process; "
        "onnxruntime CPU memory arena and memory pattern on (defaults)",
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


__all__ = [
    "CALIBRATION_TIMING",
    "VALIDATION_TIMING",
    "Graph",
    "GraphSet",
    "MeasurementError",
    "MemoryMeasurement",
    "Timing",
    "TimingPlan",
    "REFERENCE_RUNS",
    "SETTLED_SPREAD",
    "agreeing",
    "cpu_model",
    "host_hardware",
    "host_provenance",
    "measure_peak_memory",
    "reference_graph",
    "reference_ms",
    "session_options",
    "settled",
    "time_graph_sets",
    "time_graphs",
]
