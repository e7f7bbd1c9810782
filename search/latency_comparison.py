"""A bundle's onnxruntime latency on this host beside the cost model's, for the runtime it runs on.

**Runtime.** A target is a profile plus a runtime (`hwcost.runtimes`); the profile's hardware
figures are priced with the runtime the bundle runs on (`search.bundle_runtime`) whatever runtime
the profile names, as `search hwcost validate --runtime` does.

**Timing** is calibration's and validation's (`hwcost.calibration.measure.time_graphs`): one
onnxruntime thread, per-thread CPU time, the median of many runs in rounds bracketed by the load
reference graph, and the time expressed at one reference speed: a calibrated profile's own
(`measured.provenance.reference_ms`), so that the measurement and the prediction it is compared
with are at the same machine speed however loaded the host is now, or for a profile not
calibrated the least loaded speed seen while timing.

**Stated accuracy.** The gap is validation's error, predicted / measured - 1. The tolerance it
is judged against comes from a `search hwcost validate --json` report of the same profile and
runtime when one is given: the largest error over its models of the bundle's family (all its
models when it has none of that family), i.e. a gap larger than any the validation found for
such models. Without one, `DEFAULT_TOLERANCE`, the widest bound the validation summary counts
models within: the loosest accuracy the cost model states for any profile. A profile of another
instruction set than this host's is not judged: its prediction is not for this machine.

A gap beyond the tolerance is a warning, not a failed check: the bundle is still the model it
claims to be; the gap says the profile misprices this host (modelled figures, a calibration under
another load or onnxruntime version, kernels it did not calibrate), which the user should know
but which no change to the bundle fixes, and latency on a shared machine varies between runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwcost import CostModel, TargetProfile
from hwcost.calibration.measure import VALIDATION_TIMING, time_graphs
from hwcost.calibration.validation import WITHIN, ValidationError, check_host
from search.config import ConfigError
from spaces.description import ModelDescription

DEFAULT_TOLERANCE = WITHIN[-1]
"""Relative error allowed without a validation report: the widest bound `search hwcost validate`
counts models within."""


@dataclass(frozen=True)
class LatencyTolerance:
    """How far the prediction may be from the measurement before the gap is flagged.

    Attributes:
        bound: Largest |predicted / measured - 1| within the cost model's stated accuracy, or None
            when the gap is not judged.
        source: Where the bound comes from, or why there is none.
    """

    bound: float | None
    source: str


@dataclass(frozen=True)
class LatencyComparison:
    """onnxruntime's measured latency for one second of audio beside the cost model's prediction.

    Attributes:
        measured_ms: Median per-thread CPU time of one inference, one thread, at `reference_ms`.
        noise: The larger of the runs' relative interquartile range and the spread of the rounds.
        runs: Timed inferences, all rounds together.
        reference_ms: The load reference's time the measurement is expressed at.
        target: Name of the profile priced.
        runtime: The runtime it is priced with (the one the bundle runs on).
        predicted_ms: The cost model's latency for the bundle's description.
        tolerance: The cost model's stated accuracy the gap is judged against.
    """

    measured_ms: float
    noise: float
    runs: int
    reference_ms: float
    target: str
    runtime: str
    predicted_ms: float
    tolerance: LatencyTolerance

    @property
    def ratio(self) -> float:
        """Measured over predicted."""
        return self.measured_ms / self.predicted_ms

    @property
    def error(self) -> float:
        """Predicted over measured, minus one (validation's definition of the cost model's error)."""
        return self.predicted_ms / self.measured_ms - 1

    @property
    def beyond_tolerance(self) -> bool:
        """Whether the gap is larger than the cost model's stated accuracy."""
        return self.tolerance.bound is not None and abs(self.error) > self.tolerance.bound


def stated_accuracy(
    profile: TargetProfile, runtime: str, family: str, validation: str | os.PathLike | None = None
) -> LatencyTolerance:
    """The tolerance for a bundle of `family` priced on `profile` with `runtime` (module docstring).

    Args:
        validation: A `search hwcost validate --target PROFILE --runtime RUNTIME --json` report.

    Raises:
        ConfigError: the report is unreadable, lacks a key, or validated another profile or runtime.
    """
    try:
        check_host(profile)
    except ValidationError as error:
        return LatencyTolerance(None, str(error))
    if validation is None:
        widest = "the widest bound `search hwcost validate` counts models within; no --accuracy report"
        return LatencyTolerance(DEFAULT_TOLERANCE, widest)
    path = Path(validation)
    report = _validation_report(path)
    for key, wanted in (("target", profile.name), ("runtime", runtime)):
        if report[key] != wanted:
            raise ConfigError(f"{path}: {key}={report[key]!r}, but the bundle is priced on {key} {wanted!r}")
    errors: dict[str, list[float]] = defaultdict(list)
    for model in report["models"]:
        errors[model["family"]].append(abs(model["error"]))
    chosen = errors.get(family) or [error for values in errors.values() for error in values]
    which = f"its {len(chosen)} {family} model(s)" if family in errors else f"all {len(chosen)} of its models (none is {family})"
    return LatencyTolerance(max(chosen), f"the largest error of {path} over {which}")


def compare_latency(
    graph: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    description: ModelDescription,
    profile: TargetProfile,
    runtime: str,
    tolerance: LatencyTolerance,
    timing_seconds: float,
) -> LatencyComparison:
    """Time `graph` on `feeds` (one second of audio) and price `description` on `profile` with
    `runtime`.

    Args:
        timing_seconds: Least CPU time of timed runs, all rounds together (each round also runs
            at least `VALIDATION_TIMING.min_runs`).
    """
    plan = dataclasses.replace(VALIDATION_TIMING, min_cpu_seconds=timing_seconds / VALIDATION_TIMING.rounds)
    (timing,) = time_graphs([(graph, dict(feeds))], plan)
    reference = profile.calibration.get("provenance", {}).get("reference_ms") or timing.reference_ms
    predicted = CostModel().estimate(description, dataclasses.replace(profile, runtime=runtime)).latency_ms
    return LatencyComparison(
        measured_ms=timing.at_reference(reference),
        noise=max(timing.relative_iqr, timing.round_spread),
        runs=timing.runs,
        reference_ms=reference,
        target=profile.name,
        runtime=runtime,
        predicted_ms=predicted,
        tolerance=tolerance,
    )


_REPORT_KEYS = ("target", "runtime", "models")
_MODEL_KEYS = ("family", "error")


def _validation_report(path: Path) -> dict[str, Any]:
    """The keys of a validation report the tolerance reads, checked."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the validation report: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON ({error}); expected `search hwcost validate --json` output") from None
    if not isinstance(report, dict) or any(key not in report for key in _REPORT_KEYS):
        raise ConfigError(f"{path}: expected `search hwcost validate --json` output with keys {', '.join(_REPORT_KEYS)}")
    models = report["models"]
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: models must be a non-empty list, got {models!r}"[:300])
    for index, model in enumerate(models):
        if not isinstance(model, dict) or any(key not in model for key in _MODEL_KEYS):
            raise ConfigError(f"{path}: models[{index}] lacks one of {', '.join(_MODEL_KEYS)}")
        if isinstance(model["error"], bool) or not isinstance(model["error"], (int, float)):
            raise ConfigError(f"{path}: models[{index}].error must be a number, got {model['error']!r}")
    return report


__all__ = [
    "DEFAULT_TOLERANCE",
    "LatencyComparison",
    "LatencyTolerance",
    "compare_latency",
    "stated_accuracy",
]
