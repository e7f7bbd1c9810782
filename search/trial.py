"""One trial's work, identical in the driver (FP32 reference) and in Ray workers (candidates).

Quality comes from the evaluator, costs from `hwcost` on the same compressed model, so every
row of `trials.csv` is one model measured once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evaluators.verification import Evaluation, PreparedVerification, VerificationEvaluator
from hwcost import CostModel

TRIAL_NUMBER = "trial_number"
"""Config key carrying the Optuna trial number next to the candidate's knobs."""

LATENCY_DECIMALS = 3
"""Predicted latencies are kept to 1 microsecond: finer differences are below what the cost
model can resolve, and would let a worse model onto the front by a nanosecond."""


QUALITY_METRICS = ("eer", "min_dcf", "size_bytes", "params", "mean_weight_bits", "compression_ratio")
COST_METRICS = ("latency_ms", "peak_memory_bytes", "real_time_factor")


def metric_names(targets: Sequence[str]) -> list[str]:
    """Every metric a trial reports for these targets (what objectives may name)."""
    return [*QUALITY_METRICS, *COST_METRICS, *(f"{key}@{target}" for target in targets for key in COST_METRICS)]


class TrialFailure(RuntimeError):
    """A trial that produced no usable result (exception, NaN metric); its message is the reason."""


@dataclass
class TrialContext:
    """What every trial of a run shares: prepared data, targets and the FP32 reference size."""

    prepared: PreparedVerification
    targets: tuple[str, ...]
    reference_size_bytes: float
    cpus_per_trial: int


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


def evaluate_candidate(candidate: Mapping[str, Any], context: TrialContext) -> dict[str, float]:
    """Measure one candidate: quantize, score, price."""
    evaluation = VerificationEvaluator().evaluate(candidate, context.prepared)
    return measure(evaluation, context.targets, context.reference_size_bytes)


def ray_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune function trainable: evaluate the candidate in `config` and report its metrics once."""
    from ray import tune

    torch.set_num_threads(context.cpus_per_trial)
    candidate = {key: value for key, value in config.items() if key != TRIAL_NUMBER}
    start = time.perf_counter()
    try:
        metrics = evaluate_candidate(candidate, context)
    except Exception as error:  # the reason goes to trials.csv; Ray marks the trial failed
        raise TrialFailure(f"{type(error).__name__}: {error}") from error
    tune.report({**metrics, "seconds": time.perf_counter() - start})
