"""Each graph node's CPU time in a run, from onnxruntime's profiler, net of the profiler's own cost.

onnxruntime's profiler records, per node and run, a `*_kernel_time` event. The interval it times
includes its own bookkeeping (it formats the node's input and output shapes inside it), which
on a small node takes longer than the node's work: recorded times would credit every small node
(a residual add, a QuantizeLinear) with time it does not take, and so, as shares of a run, the
large ones with less. So the profiler's cost per node is measured beside each profile
(`profiler_overhead_us`: a chain of nodes that do next to nothing) and taken off every node's
median recorded time.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from hwcost.calibration.measure import session_options

PROFILED_RUNS = 10
"""Profiled runs of a graph (each node's time is its median over them)."""

PROBE_NODES = 32
"""Nodes of the overhead probe: a chain of negations of one element."""

PROBE_TIMED_RUNS = 50
"""Runs of the probe without the profiler, timing what its nodes really take."""

_KERNEL_TIME = "_kernel_time"
_PROBE_OPSET = 17


def recorded_node_times_us(graph: onnx.ModelProto, feeds: Mapping[str, np.ndarray], runs: int = PROFILED_RUNS) -> dict[str, list[float]]:
    """Per node name, the kernel time the profiler recorded in each of `runs` runs (microseconds)."""
    with tempfile.TemporaryDirectory(prefix="hwcost-profile-") as folder:
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, dict(feeds))
        events = json.loads(Path(session.end_profiling()).read_text())
    recorded: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith(_KERNEL_TIME):
            recorded[event["name"].removesuffix(_KERNEL_TIME)].append(float(event["dur"]))
    return dict(recorded)


def probe_graph() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """`PROBE_NODES` chained negations of a one-element tensor, and its input."""
    nodes = [onnx.helper.make_node("Neg", [f"t{index}"], [f"t{index + 1}"], name=f"probe{index}") for index in range(PROBE_NODES)]
    graph = onnx.helper.make_graph(
        nodes, "profiler_probe", [onnx.helper.make_tensor_value_info("t0", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info(f"t{PROBE_NODES}", onnx.TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", _PROBE_OPSET)])
    return model, {"t0": np.ones(1, dtype=np.float32)}


def profiler_overhead_us() -> float:
    """What the profiler adds to each node's recorded time, in microseconds: the probe's median
    recorded node time less its nodes' CPU time per run without the profiler (an upper bound on
    what they take, the run's own fixed work included), never below zero."""
    graph, feeds = probe_graph()
    recorded = recorded_node_times_us(graph, feeds)
    session = onnxruntime.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    timings = []
    for _ in range(PROBE_TIMED_RUNS):
        started = time.thread_time()
        session.run(None, feeds)
        timings.append(time.thread_time() - started)
    per_node_us = statistics.median(timings) * 1e6 / PROBE_NODES
    return max(0.0, statistics.median(duration for durations in recorded.values() for duration in durations) - per_node_us)


def net_node_times_us(recorded: Mapping[str, Sequence[float]], overhead_us: float) -> dict[str, float]:
    """Each node's median recorded time less the profiler's `overhead_us`, never below zero."""
    return {node: max(0.0, statistics.median(durations) - overhead_us) for node, durations in recorded.items() if durations}


def node_times_us(graph: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each node's CPU time in one run of `graph` (microseconds), the profiler's cost taken off."""
    recorded = recorded_node_times_us(graph, feeds)
    return net_node_times_us(recorded, profiler_overhead_us())


__all__ = [
    "PROBE_NODES",
    "PROFILED_RUNS",
    "net_node_times_us",
    "node_times_us",
    "probe_graph",
    "profiler_overhead_us",
    "recorded_node_times_us",
]
