"""One trial's work, identical in the driver (FP32 reference) and in Ray workers (candidates).

Quality comes from the evaluator, costs from `hwcost` on the same compressed model, so every
row of `trials.csv` is one model measured once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evaluators.extraction import ExtractionEvaluator, extraction_spec
from evaluators.verification import Evaluation, PreparedVerification, VerificationEvaluator, model_spec
from hwcost import CostModel
from spaces.compress import ModelSpec

TRIAL_NUMBER = "trial_number"
"""Config key carrying the Optuna trial number next to the candidate's knobs."""
RUNG = "rung"
"""Report key: index of the fidelity-ladder rung the metrics were measured at (0 = first)."""
STEPS = "steps"
"""Report key: cumulative fine-tuning steps of that rung (0 = post-training quantization)."""
NODE = "node"
"""Report key: id of the Ray node that ran the trial."""

LATENCY_DECIMALS = 3
"""Predicted latencies are kept to 1 microsecond: finer differences are below what the cost
model can resolve, and would let a worse model onto the front by a nanosecond."""


TASK_METRICS = {"verification": ("eer", "min_dcf"), "extraction": ("si_sdri", "sdri")}
"""Each task's quality metrics, its headline first (EER for verification, SI-SDRi in dB for extraction)."""
SIZE_METRICS = ("size_bytes", "params", "mean_weight_bits", "compression_ratio")
QUALITY_METRICS = (*TASK_METRICS["verification"], *SIZE_METRICS)
COST_METRICS = ("latency_ms", "peak_memory_bytes", "real_time_factor")
EVAL_SET_METRICS = ("eer", "min_dcf")
"""Quality metrics reported once per evaluation set, as `eer@<set>`."""


def metric_names(targets: Sequence[str], eval_sets: Sequence[str] = (), task: str = "verification") -> list[str]:
    """Every metric a trial of `task` reports for these targets and evaluation sets (what objectives may name)."""
    per_set = (f"{key}@{name}" for name in eval_sets for key in EVAL_SET_METRICS)
    per_target = (f"{key}@{target}" for target in targets for key in COST_METRICS)
    return [*TASK_METRICS[task], *SIZE_METRICS, *per_set, *COST_METRICS, *per_target]


def evaluator_for(config: Any) -> VerificationEvaluator | ExtractionEvaluator:
    """The evaluator of a run config's `task:`."""
    return ExtractionEvaluator() if config.task == "extraction" else VerificationEvaluator()


def model_spec_for(config: Any) -> ModelSpec:
    """The model a run compresses: a filterbank model (verification) or a raw-audio extractor."""
    return extraction_spec(config) if config.task == "extraction" else model_spec(config)


class TrialFailure(RuntimeError):
    """A trial that produced no usable result (exception, NaN metric); its message is the reason."""


@dataclass
class TrialContext:
    """What every trial of a run shares: prepared data, targets and the FP32 reference size."""

    prepared: PreparedVerification
    targets: tuple[str, ...]
    reference_size_bytes: float
    cpus_per_trial: int
    evaluator: Any = field(default_factory=VerificationEvaluator)
    """The run's evaluator (stateless; pickled to the workers with the context)."""


def measure(evaluation: Evaluation, targets: Sequence[str], reference_size_bytes: float) -> dict[str, float]:
    """Quality metrics plus size ratio and predicted costs on every target.

    The first target's costs are also reported without the `@target` suffix, so objectives may
    say `latency_ms` for the run's main target.
    """
    metrics = dict(evaluation.metrics)
    size = metrics["size_bytes"]
    metrics["compression_ratio"] = reference_size_bytes / size if reference_size_bytes else 1.0
    cost_model = CostModel()
    for index, target in enumerate(targets):
        estimate = cost_model.estimate(evaluation.compressed.description, target).to_dict()
        estimate["latency_ms"] = round(estimate["latency_ms"], LATENCY_DECIMALS)
        for key in COST_METRICS:
            metrics[f"{key}@{target}"] = float(estimate[key])
            if index == 0:
                metrics[key] = float(estimate[key])
    bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise TrialFailure(f"non-finite metric(s) {bad}")
    return metrics


def measure_rungs(candidate: Mapping[str, Any], context: TrialContext) -> Iterator[dict[str, float]]:
    """The candidate's metrics after each rung, with the rung, its steps and the seconds spent so far."""
    start = time.perf_counter()
    for rung, (steps, evaluation) in enumerate(context.evaluator.evaluate_ladder(candidate, context.prepared)):
        metrics = measure(evaluation, context.targets, context.reference_size_bytes)
        yield {**metrics, RUNG: rung, STEPS: steps, "seconds": time.perf_counter() - start}


def ray_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune function trainable: report the candidate's metrics once per fidelity rung.

    A scheduler may stop the trial between rungs. Any exception (including a non-finite metric)
    becomes a `TrialFailure` whose message is the reason recorded in trials.csv.
    """
    import ray
    from ray import tune

    torch.set_num_threads(context.cpus_per_trial)
    candidate = {key: value for key, value in config.items() if key != TRIAL_NUMBER}
    node = ray.get_runtime_context().get_node_id()
    rungs = measure_rungs(candidate, context)
    while True:
        try:
            report = next(rungs)
        except StopIteration:
            return
        except Exception as error:  # the reason goes to trials.csv; Ray marks the trial failed
            raise TrialFailure(f"{type(error).__name__}: {error}") from error
        tune.report({**report, NODE: node})
