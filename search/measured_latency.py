"""Measured latency: a trial's model timed by onnxruntime on a Ray node of a measured target's kind.

A `targets:` entry with `measure: true` (`search.run_config.MeasuredTarget`) names Ray resources,
e.g. `{rpi4: 1}`, that a device advertises when it joins the cluster (`ray start --address HEAD
--resources '{"rpi4": 1}'`). The trial's worker exports its compressed model to ONNX as `search
export` writes a bundle's graph (`search.onnx_export.export_onnx`: quantized layers stay integer
codes decoded in the graph), on one second of input with fixed shapes as `search hwcost validate`
times its models, and hands the graph's bytes to a Ray task that asks for those resources and the
target's `cpus`: Ray runs it on a node that advertises them and holds them for it while it times,
so no other Ray work lands on those CPUs meanwhile. The task times the graph as onnxruntime loads
it, with the calibration's timing (`hwcost.calibration.measure.time_graphs`: one thread,
per-thread CPU time, rounds bracketed by the load reference), and returns the time with the node
that took it.

Ray Tune runs each trial in a placement group and places the tasks a trial starts in that group
too, where no device's resources are: the timing task leaves it (`scheduling_strategy="DEFAULT"`).
A trial waits at most the target's `timeout_s` for its timing (queued behind other trials'
timings included); then the task is cancelled and the trial fails with a reason that says whether
any live node advertises the resources, so a missing device fails trials instead of hanging them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from hwcost.calibration.measure import VALIDATION_TIMING, TimingPlan, time_graphs
from search.onnx_export import export_onnx
from search.run_config import MeasuredTarget
from spaces.compress import CompressedModel, ModelSpec, stored_quantized
from spaces.quant import unpack_weights

OUTPUT_NAME = "output"
"""Name of the timed graph's output (the model's one output; timing reads no name)."""
_FEED_SEED = 0
"""Seed of the random input the graph is timed on (normal values, as calibration's and validation's)."""


@dataclass(frozen=True)
class MeasuredLatency:
    """One model's time on a node of a measured target's kind.

    Attributes:
        latency_ms: Median per-thread CPU time of one inference on one second of input, one
            onnxruntime thread, at the node's least loaded load-reference speed over the rounds
            (`hwcost.calibration.measure.Timing.at_reference`).
        node_id: The Ray node that timed it.
    """

    latency_ms: float
    node_id: str


class LatencyTimeout(RuntimeError):
    """No node of a measured target's kind timed the model within the target's `timeout_s`."""


def timing_graph(compressed: CompressedModel, spec: ModelSpec) -> tuple[bytes, dict[str, np.ndarray]]:
    """The trial's model as serialized ONNX, and one second of input to time it on.

    The quantized layers are read back from the packed weights, as `spaces.load_bundle` reads a
    bundle's, so the graph decodes the codes that ship.
    """
    model = compressed.model
    examples = {f"input{index}": tensor for index, tensor in enumerate(spec.example_inputs(model))}
    graph = export_onnx(model, stored_quantized(unpack_weights(compressed.packed)), examples, [OUTPUT_NAME], {})
    rng = np.random.default_rng(_FEED_SEED)
    feeds = {name: rng.standard_normal(tuple(tensor.shape)).astype(np.float32) for name, tensor in examples.items()}
    return graph.SerializeToString(), feeds


def _time_graph(graph: bytes, feeds: dict[str, np.ndarray], plan: TimingPlan) -> MeasuredLatency:
    """Runs on the node Ray chose for the target's resources."""
    import ray

    (timing,) = time_graphs([(onnx.load_from_string(graph), feeds)], plan)
    return MeasuredLatency(timing.at_reference(timing.reference_ms), ray.get_runtime_context().get_node_id())


@functools.cache
def _remote_timing() -> Any:
    """`_time_graph` as a Ray task, made on first use: importing this module (as every report and
    CLI command does through `search.trial`) does not load Ray."""
    import ray

    return ray.remote(_time_graph)


def time_on_targets(
    compressed: CompressedModel, spec: ModelSpec, targets: Sequence[MeasuredTarget]
) -> dict[str, MeasuredLatency]:
    """The model's measured latency on a node of each target's kind, by target name.

    The model is exported once; the timings of several targets run at once, each on its own kind of node.

    Raises:
        LatencyTimeout: A target's timing did not come back within its `timeout_s`.
    """
    import ray
    from ray.exceptions import GetTimeoutError

    graph, feeds = timing_graph(compressed, spec)
    graph_ref, feeds_ref = ray.put(graph), ray.put(feeds)
    submitted = time.monotonic()
    pending = {
        target.name: _remote_timing().options(
            num_cpus=target.cpus, resources=dict(target.resources), scheduling_strategy="DEFAULT"
        ).remote(graph_ref, feeds_ref, dataclasses.replace(VALIDATION_TIMING, min_runs=target.repeats))
        for target in targets
    }
    measured = {}
    try:
        for target in targets:
            waited = time.monotonic() - submitted
            try:
                measured[target.name] = ray.get(pending[target.name], timeout=max(target.timeout_s - waited, 0.0))
            except GetTimeoutError:
                raise LatencyTimeout(_timeout_reason(target)) from None
    finally:
        for name, reference in pending.items():
            if name not in measured:
                ray.cancel(reference)
    return measured


def _timeout_reason(target: MeasuredTarget) -> str:
    """Why a timing did not come back: which live nodes, if any, advertise what it asks for."""
    import ray

    wanted: Mapping[str, float] = {**({"CPU": float(target.cpus)} if target.cpus else {}), **target.resources}
    offering = [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and all(node["Resources"].get(key, 0.0) >= amount for key, amount in wanted.items())
    ]
    if offering:
        where = (
            f"{len(offering)} live node(s) advertise them, none free in time: busy with other timings, or their "
            "CPUs held by trials placed there, which keep them while they wait for a timing"
        )
    else:
        where = "no live node of the cluster advertises them"
    return f"latency on {target.name!r}: not timed within {target.timeout_s:g} s by a node with {dict(wanted)}; {where}"


__all__ = ["LatencyTimeout", "MeasuredLatency", "time_on_targets", "timing_graph"]
