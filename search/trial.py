"""One trial's work, identical in the driver (FP32 reference) and in Ray workers (candidates).

Quality comes from the evaluator, costs from `hwcost` on the same compressed model, so every
row of `trials.csv` is one model measured once. A measured target's latency is timed on a Ray node
of its kind (`search.measured_latency`), the prediction kept beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from evaluators.evaluation import Evaluation, Evaluator, Prepared
from hwcost import CostModel
from search.measured_latency import time_on_targets
from search.metrics import COST_METRICS, PREDICTED_LATENCY
from search.run_config import MeasuredTarget

TRIAL_NUMBER = "trial_number"
"""Config key carrying the Optuna trial number next to the candidate's knobs."""
RUNG = "rung"
"""Report key: index of the fidelity-ladder rung the metrics were measured at (0 = first)."""
STEPS = "steps"
"""Report key: cumulative fine-tuning steps of that rung (0 = post-training quantization)."""
REUSED = "reused"
"""Config key of a proposal measured before: {"trial": number, "rungs": [its result per rung]} (`search.reuse`)."""
REUSED_FROM = "reused_from"
"""Report and row key: the trial whose measurement a trial reused instead of evaluating."""
NODE = "node"
"""Report key: id of the Ray node that ran the trial."""
TIMED_ON = "timed_on"
"""Report key prefix: `timed_on@<target>`, id of the Ray node that timed a measured target (a
trial result's, beside its metrics; rows keep the metric columns only)."""

LATENCY_DECIMALS = 3
"""Predicted latencies are kept to 1 microsecond: finer differences are below what the cost
model can resolve, and would let a worse model onto the front by a nanosecond."""


class TrialFailure(RuntimeError):
    """A trial that produced no usable result (exception, NaN metric); its message is the reason."""


class RungKeeper(Protocol):
    """Where a worker keeps the model of each rung it measured (`search.artifacts.ArtifactChannel`)."""

    def keep(
        self, trial: int, rung: int, steps: int, candidate: Mapping[str, Any], prepared: Prepared, evaluation: Evaluation
    ) -> None: ...


@dataclass
class TrialContext:
    """What every trial of a run shares: prepared data, targets and the FP32 reference size."""

    prepared: Prepared
    targets: tuple[str, ...]
    reference_size_bytes: float
    cpus_per_trial: int
    evaluator: Evaluator
    """The run's evaluator (stateless; pickled to the workers with the context)."""
    artifacts: RungKeeper | None = None
    """Where workers send each measured model for the run directory; None when the run keeps none."""
    measured_targets: tuple[MeasuredTarget, ...] = ()
    """Targets whose latency every rung's model is timed for on a node of their kind."""


def measure(
    evaluation: Evaluation,
    targets: Sequence[str],
    reference_size_bytes: float,
    cost_model: CostModel | None = None,
    measured_targets: Collection[str] = (),
    timings: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Quality metrics plus size ratio and predicted costs on every target.

    The first target's costs are also reported without the `@target` suffix, so objectives may
    say `latency_ms` for the run's main target. A measured target's `latency_ms` (and real-time
    factor) is its timing, and `predicted_latency_ms` the cost model's figure; its peak memory
    stays predicted.

    Args:
        cost_model: The run's cost model, loaded once (its target profiles are files); a new one when None.
        measured_targets: The targets among `targets` timed on a node of their kind.
        timings: Milliseconds timed per measured target; None where the model was priced only
            (the FP32 reference, which the driver measures before it joins the cluster): the
            prediction then stands in for the timing, so its row has the same columns.
    """
    metrics = dict(evaluation.metrics)
    size = metrics["size_bytes"]
    metrics["compression_ratio"] = reference_size_bytes / size if reference_size_bytes else 1.0
    cost_model = cost_model or CostModel()
    for index, target in enumerate(targets):
        estimate = cost_model.estimate(evaluation.compressed.description, target).to_dict()
        estimate["latency_ms"] = round(estimate["latency_ms"], LATENCY_DECIMALS)
        keys = COST_METRICS
        if target in measured_targets:
            keys = (*COST_METRICS, PREDICTED_LATENCY)
            estimate[PREDICTED_LATENCY] = estimate["latency_ms"]
            if timings is not None:
                estimate["latency_ms"] = round(timings[target], LATENCY_DECIMALS)
                estimate["real_time_factor"] = timings[target] / 1000.0
        for key in keys:
            metrics[f"{key}@{target}"] = float(estimate[key])
            if index == 0:
                metrics[key] = float(estimate[key])
    bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise TrialFailure(f"non-finite metric(s) {bad}")
    return metrics


def measure_rungs(
    candidate: Mapping[str, Any], context: TrialContext, trial_number: int | None = None
) -> Iterator[dict[str, float | str]]:
    """The candidate's metrics after each rung, with the rung, its steps and the seconds spent so far,
    and the node that timed each measured target.

    With a `trial_number` and the context's artifact channel, each rung's model is on the driver's
    disk before its metrics are yielded (`search.artifacts`).
    """
    start = time.perf_counter()
    cost_model = CostModel()
    measured_targets = [target.name for target in context.measured_targets]
    for rung, (steps, evaluation) in enumerate(context.evaluator.evaluate_ladder(candidate, context.prepared)):
        timed = (
            time_on_targets(evaluation.compressed, context.prepared.spec, context.measured_targets)
            if context.measured_targets
            else {}
        )
        timings = {target: timing.latency_ms for target, timing in timed.items()}
        metrics = measure(evaluation, context.targets, context.reference_size_bytes, cost_model, measured_targets, timings)
        if context.artifacts is not None and trial_number is not None:
            context.artifacts.keep(trial_number, rung, steps, candidate, context.prepared, evaluation)
        timed_on = {f"{TIMED_ON}@{target}": timing.node_id for target, timing in timed.items()}
        yield {**metrics, **timed_on, RUNG: rung, STEPS: steps, "seconds": time.perf_counter() - start}


def ray_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune function trainable: report the candidate's metrics once per fidelity rung.

    A scheduler may stop the trial between rungs. Any exception (including a non-finite metric)
    becomes a `TrialFailure` whose message is the reason recorded in trials.csv.
    """
    import ray
    from ray import tune

    torch.set_num_threads(context.cpus_per_trial)
    # Tune reuses a worker process for the next trial: restart torch's global generator from its
    # initial seed, as in a fresh process, so a trial's result does not depend on the one before.
    torch.manual_seed(torch.initial_seed())
    node = ray.get_runtime_context().get_node_id()
    if REUSED in config:  # measured before: report those results as they were
        for result in config[REUSED]["rungs"]:
            tune.report({**result, REUSED_FROM: config[REUSED]["trial"], NODE: node})
        return
    candidate = {key: value for key, value in config.items() if key != TRIAL_NUMBER}
    rungs = measure_rungs(candidate, context, config.get(TRIAL_NUMBER))
    while True:
        try:
            report = next(rungs)
        except StopIteration:
            return
        except Exception as error:  # the reason goes to trials.csv; Ray marks the trial failed
            raise TrialFailure(f"{type(error).__name__}: {error}") from error
        tune.report({**report, NODE: node})
