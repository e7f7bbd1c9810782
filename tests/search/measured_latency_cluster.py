"""Run as a script: a trial with measured targets on a two-node local Ray cluster of its own.

The head node (2 CPUs and a `trial` slot) runs the trial as Ray Tune runs one: an actor in a
placement group that captures the tasks it starts; its second CPU is free, so a timing that
ignored the target's resources could run there. The worker node (1 CPU, `rpi4: 1`) is the
device; only it advertises `rpi4`. The trial measures its two rungs with `x86-avx2` timed on
`rpi4`, then again with targets no node can time (`UNSCHEDULABLE`) and a short timeout. Prints one
JSON line: the node ids, the reports and the failures (`test_measured_latency.py`).

A separate process, so that its `ray.init` does not meet the test session's Ray.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import ray
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from evaluators.evaluation import Evaluation
from search.measured_latency import LatencyTimeout
from search.run_config import MeasuredTarget
from search.trial import TrialContext, measure_rungs
from spaces.compress import ModelSpec, compress, quantizable_layers

SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)
TARGETS = ("x86-avx2", "cortex-a72")
TIMED = MeasuredTarget("x86-avx2", resources={"rpi4": 1}, cpus=1, repeats=5, timeout_s=120)
UNSCHEDULABLE_TIMEOUT_S = 2.0
UNSCHEDULABLE = {
    "missing device": MeasuredTarget("x86-avx2", resources={"jetson": 1}, timeout_s=UNSCHEDULABLE_TIMEOUT_S),
    "more CPUs than the device has": MeasuredTarget("x86-avx2", resources={"rpi4": 1}, cpus=2, timeout_s=UNSCHEDULABLE_TIMEOUT_S),
}
"""Targets no node can time: the trial must fail after the timeout, not hang."""


class _Prepared:
    spec = SPEC


class TwoRungEvaluator:
    """Every quantizable layer at 4 bits, reported at two rungs (a stand-in for fine-tuning)."""

    def evaluate_ladder(self, candidate, prepared):
        model = SPEC.build()
        compressed = compress(SPEC, model.state_dict(), {layer: 4 for layer in quantizable_layers(model)})
        for steps in (0, 10):
            yield steps, Evaluation({"eer": 0.2, "min_dcf": 0.5, "size_bytes": float(len(compressed.packed))}, compressed)


@ray.remote(num_cpus=1)
class Trial:
    """A trial's worker process, as Ray Tune starts one."""

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def rungs(self, context: TrialContext) -> list[dict]:
        return list(measure_rungs({}, context))

    def failure(self, context: TrialContext) -> tuple[str, float]:
        started = time.monotonic()
        try:
            list(measure_rungs({}, context))
        except LatencyTimeout as error:
            return str(error), time.monotonic() - started
        return "", time.monotonic() - started


def main() -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"trial": 1}})
    try:
        device = cluster.add_node(num_cpus=1, resources={"rpi4": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        group = placement_group([{"CPU": 1, "trial": 1}])
        ray.get(group.ready(), timeout=60)
        trial = Trial.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
        ).remote()
        context = TrialContext(_Prepared(), TARGETS, 2000.0, 1, TwoRungEvaluator(), measured_targets=(TIMED,))
        reports = ray.get(trial.rungs.remote(context))
        failures = {
            name: ray.get(trial.failure.remote(replace(context, measured_targets=(target,))))
            for name, target in UNSCHEDULABLE.items()
        }
        return {
            "head": cluster.head_node.node_id,
            "device": device.node_id,
            "trial_node": ray.get(trial.node.remote()),
            "reports": reports,
            "failures": failures,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main()) + "\n")
