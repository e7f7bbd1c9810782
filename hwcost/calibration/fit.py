"""Fitting a runtime's kernel costs and memory terms to measurements.

Latency: a case's time is the sum of its kernels' times, and a kernel's time is linear in its
features (`hwcost.kernels`), so all cases together give one linear system in the per-key
coefficients, solved at once by non-negative least squares on relative errors (each case's row
divided by its measured time), columns scaled to unit maximum for conditioning. One joint fit,
rather than one per kind, lets a case hold several kinds (a TDNN block's convolution and batch
norm) and the fixed work of a run be shared by all. Non-negative coefficients keep every kernel
from getting cheaper as it grows.

Peak memory: linear in the runtime's fixed cost, each cost key's resident weight bytes, the
largest activation set, the activations live at once and the largest decoded weight
(`hwcost.memory.memory_features`), fitted the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression

from hwcost.estimator import NANOSECONDS_PER_MS
from hwcost.kernels import DEFAULT_SPILL, Kernel, SpillRamp, priced_features
from hwcost.memory import MemoryCoefficients, memory_features
from hwcost.runtimes import Lowering, Runtime

HUBER_SCALES = 2.5
"""Robust standard deviations of error within which a case keeps its full weight (a common Huber bound)."""
HUBER_ROUNDS = 3
MAD_TO_STANDARD_DEVIATION = 1.4826
"""Median absolute deviation to standard deviation, for normally distributed errors."""

MIN_FITTED_WEIGHT_BYTES = 1 << 20
"""Smallest weight bytes of a cost key, in some case, for its copies to be fitted (see `fit_memory`)."""

_FIXED = "fixed_bytes"
_KERNEL_TYPES = "kernel_type_bytes"
_ACTIVATIONS = "activation_factor"
_LIVE = "live_factor"
_PATTERN = "pattern_factor"
_DECODED = "decoded_factor"


@dataclass(frozen=True)
class Observation:
    """One measured case under one runtime.

    Attributes:
        name: The case's name.
        lowering: Its description lowered by the runtime.
        measured_ms: Median CPU time of one inference.
        noise: Relative interquartile range of the timed runs.
        measured_peak_bytes: Peak memory, or None when not measured.
    """

    name: str
    lowering: Lowering
    measured_ms: float
    noise: float
    measured_peak_bytes: int | None = None

    def kernels(self) -> list[Kernel]:
        return [kernel for lowered in self.lowering.layers for kernel in lowered.kernels] + list(self.lowering.fixed)


@dataclass(frozen=True)
class FitReport:
    """How well a fit reproduces its own cases: relative error (predicted / measured - 1) per case."""

    errors: Mapping[str, float]

    def summary(self, prefix: str) -> dict[str, object]:
        """Case count, median and worst absolute relative error, and the worst case, keys prefixed."""
        if not self.errors:
            return {f"{prefix}_cases": 0}
        worst = max(self.errors, key=lambda name: abs(self.errors[name]))
        return {
            f"{prefix}_cases": len(self.errors),
            f"{prefix}_median_abs_error": round(statistics.median(abs(error) for error in self.errors.values()), 4),
            f"{prefix}_worst_abs_error": round(abs(self.errors[worst]), 4),
            f"{prefix}_worst_case": worst,
        }


def _solve(
    rows: Sequence[Mapping[str, float]], measured: Sequence[float], offsets: Sequence[float] | None = None
) -> tuple[dict[str, float], list[float]]:
    """Non-negative coefficients per column minimising the relative errors of the rows' values
    plus their known `offsets`; with the fitted values (offsets included).

    Huber-weighted: after each fit, cases whose relative error exceeds `HUBER_SCALES` robust
    standard deviations (from the median absolute error) get a weight inversely proportional to
    it, and the fit is repeated `HUBER_ROUNDS` times, so a case timed during a burst of load on
    the machine does not drag every coefficient.
    """
    columns = sorted({column for row in rows for column in row})
    design = np.array([[row.get(column, 0.0) for column in columns] for row in rows], dtype=float)
    target = np.asarray(measured, dtype=float)
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    known = np.zeros(len(target)) if offsets is None else np.asarray(offsets, dtype=float)
    relative = design / scale / target[:, None]
    remainder = 1.0 - known / target
    weights = np.ones(len(target))
    for _ in range(HUBER_ROUNDS + 1):
        regression = LinearRegression(positive=True, fit_intercept=False).fit(relative * weights[:, None], remainder * weights)
        errors = np.abs(relative @ regression.coef_ - remainder)
        bound = HUBER_SCALES * MAD_TO_STANDARD_DEVIATION * max(float(np.median(errors)), np.finfo(float).eps)
        weights = np.minimum(1.0, bound / np.maximum(errors, np.finfo(float).eps))
    coefficients = regression.coef_ / scale
    return dict(zip(columns, coefficients.tolist())), (design @ coefficients + known).tolist()


STEP_SPILL_CANDIDATES = (
    DEFAULT_SPILL,
    *(SpillRamp(start / 10, (start + width) / 10) for start in range(3, 11) for width in (3, 5, 7, 10, 15)),
)
"""Spill ramps of the recurrent steps a calibration chooses among (the modelled one first, kept on a tie)."""


@dataclass(frozen=True)
class LatencyFit:
    """A runtime's fitted kernel costs.

    Attributes:
        coefficients: Per cost key, nanoseconds per unit of each feature.
        step_spill: The spill ramp of the recurrent steps the coefficients go with.
        report: The fit's errors on its cases.
    """

    coefficients: dict[str, dict[str, float]]
    step_spill: SpillRamp
    report: FitReport


def fit_latency(observations: Sequence[Observation], cache_bytes: float, channel_block: int = 1) -> LatencyFit:
    """Per cost key, nanoseconds per unit of each feature, on a CPU with `cache_bytes` of L2 per
    core and `channel_block` float lanes (`hwcost.kernels.priced_features`), with the recurrent
    steps' spill ramp that fits the cases best.

    How much of a gate matrix a step reads from beyond L2 as the matrix outgrows it depends on
    the CPU's replacement policy, and it is not linear in anything the fit can weigh: so the fit
    is solved once per ramp of `STEP_SPILL_CANDIDATES` and the ramp with the smallest mean
    absolute relative error over the cases is kept (only the cases' recurrent steps differ
    between the solves; without any, the modelled ramp is kept unsolved for).
    """
    recurrent = any(kernel.features.get("steps", 0.0) > 0 for observation in observations for kernel in observation.kernels())
    ramps = STEP_SPILL_CANDIDATES if recurrent else (DEFAULT_SPILL,)
    fits = [_fit_latency(observations, cache_bytes, ramp, channel_block) for ramp in ramps]
    return min(fits, key=lambda fit: statistics.fmean(abs(error) for error in fit.report.errors.values()))


def _fit_latency(observations: Sequence[Observation], cache_bytes: float, step_spill: SpillRamp, channel_block: int) -> LatencyFit:
    rows = []
    for observation in observations:
        row: dict[tuple[str, str], float] = {}
        touched_bytes = observation.lowering.touched_bytes
        for kernel in observation.kernels():
            for feature, value in priced_features(kernel, touched_bytes, cache_bytes, step_spill, channel_block).items():
                row[(kernel.key, feature)] = row.get((kernel.key, feature), 0.0) + value
        rows.append(row)
    measured = [observation.measured_ms * NANOSECONDS_PER_MS for observation in observations]
    solution, fitted = _solve(rows, measured)
    coefficients: dict[str, dict[str, float]] = {}
    for (key, feature), value in sorted(solution.items()):
        coefficients.setdefault(key, {})[feature] = value
    errors = {o.name: value / target - 1 for o, value, target in zip(observations, fitted, measured)}
    return LatencyFit(coefficients, step_spill, FitReport(errors))


def fit_memory(observations: Sequence[Observation], runtime: Runtime) -> tuple[MemoryCoefficients, FitReport]:
    """The peak-memory terms; and the fit's errors on the cases with a measured peak.

    Copies are fitted only for cost keys whose weights reach `MIN_FITTED_WEIGHT_BYTES` in some
    case: below it a key's weights are lost in the measurement's page granularity and noise, and
    a fitted copy count would stand for something else (code, activations) and extrapolate
    wildly; such weights are held once (`MemoryCoefficients.default_copies`).
    """
    measured_cases = [observation for observation in observations if observation.measured_peak_bytes is not None]
    features = [memory_features(observation.lowering, runtime) for observation in measured_cases]
    largest: dict[str, float] = {}
    for case in features:
        for key, value in case.weights.items():
            largest[key] = max(largest.get(key, 0.0), value)
    fitted_keys = {key for key, value in largest.items() if value >= MIN_FITTED_WEIGHT_BYTES}
    rows, offsets = [], []
    for case in features:
        copies = {f"copies:{key}": value for key, value in case.weights.items() if key in fitted_keys}
        rows.append(
            {
                _FIXED: 1.0, _KERNEL_TYPES: case.kernel_types, _ACTIVATIONS: case.activations,
                _LIVE: case.live, _PATTERN: case.live_beyond_first_region, _DECODED: case.decoded, **copies,
            }  # fmt: skip
        )
        offsets.append(sum(value for key, value in case.weights.items() if key not in fitted_keys))
    if not rows:
        return MemoryCoefficients(), FitReport({})
    solution, fitted = _solve(rows, [float(observation.measured_peak_bytes) for observation in measured_cases], offsets)
    coefficients = MemoryCoefficients(
        fixed_bytes=solution[_FIXED],
        kernel_type_bytes=solution[_KERNEL_TYPES],
        weight_copies={column.removeprefix("copies:"): value for column, value in solution.items() if column.startswith("copies:")},
        activation_factor=solution[_ACTIVATIONS],
        live_factor=solution[_LIVE],
        pattern_factor=solution[_PATTERN],
        decoded_factor=solution[_DECODED],
    )
    errors = {o.name: value / o.measured_peak_bytes - 1 for o, value in zip(measured_cases, fitted)}
    return coefficients, FitReport(errors)


__all__ = ["STEP_SPILL_CANDIDATES", "FitReport", "LatencyFit", "Observation", "fit_latency", "fit_memory"]
