"""The smallest difference each objective can resolve, and which rows beat others by more than it.

Every objective is a measurement or a prediction of finite precision. Two trials whose values
differ by less than that precision are not known to differ, so such a difference must not put a
trial on the Pareto front, keep it off, or pull the knee towards it. Each objective therefore
carries a `Resolution`: an absolute amount in the metric's unit, or a fraction of the better of
the two values compared. Rows are compared as minimisation values (maximised objectives
negated), as `search.pareto` orients them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.metrics import COST_METRICS


@dataclass(frozen=True)
class Resolution:
    """Differences up to `amount` (in the metric's unit, or times the better value when `relative`) are ties.

    Attributes:
        amount: The tolerance; 0 means every difference counts.
        relative: Whether `amount` is a fraction of the better of the two values compared, for
            metrics whose error grows with the value (a latency prediction).
    """

    amount: float = 0.0
    relative: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) or not math.isfinite(self.amount):
            raise ValueError(f"resolution must be a finite number, got {self.amount!r}")
        if self.amount < 0:
            raise ValueError(f"resolution must be >= 0, got {self.amount!r}")
        if self.relative and self.amount >= 1:
            # A fraction of 1 or more would tie a value with every value up to twice it and beyond.
            raise ValueError(f"a relative resolution must be below 100%, got {100 * self.amount:g}%")

    @classmethod
    def parse(cls, value: Resolution | float | str) -> Resolution:
        """A resolution from a config value: a number (absolute, in the metric's unit) or "N%" (relative).

        Raises:
            ValueError: Any other value, a negative or non-finite amount, or a relative one of 100% or more.
        """
        if isinstance(value, Resolution):
            return value
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                percent = float(value.strip()[:-1])
            except ValueError:
                raise ValueError(f"resolution {value!r}: expected a number or a percentage such as '10%'") from None
            return cls(percent / 100.0, relative=True)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"resolution {value!r}: expected a number or a percentage such as '10%'")
        return cls(float(value))

    def to_config(self) -> float | str:
        """The config form `parse` reads back: a number, or "N%" for a relative resolution."""
        return f"{100 * self.amount:g}%" if self.relative else float(self.amount)

    def tolerance(self, better: np.ndarray | float) -> np.ndarray:
        """The largest difference that is still a tie, given the better of the values compared."""
        better = np.asarray(better, dtype=np.float64)
        return self.amount * np.abs(better) if self.relative else np.full_like(better, self.amount)

    def __str__(self) -> str:
        if self.amount == 0:
            return "exact"
        return f"{100 * self.amount:g}%" if self.relative else f"{self.amount:g}"


EXACT = Resolution()
"""Every difference counts. Sizes are byte counts of the packed weights, computed rather than
estimated, so two sizes that differ do differ. Quality metrics (EER, minDCF, SI-SDRi) are exact
unless the objective states a tolerance: trial rows carry no confidence interval (only an
exported bundle's model card does), and a sensible tolerance depends on the evaluation set's
size, so the config states it (e.g. the half-width of the interval the model card reports)."""

COST_MODEL_RESOLUTION = Resolution(0.10, relative=True)
"""Resolution of every cost-model prediction (latency, peak memory, real-time factor).

`hwcost` states no accuracy of its own (docs/cost-model.md). The fraction is the accuracy the
best published CPU latency predictor claims for nearly all models (nn-Meter, cited in issue
#23); the roofline model here does not reach it (issue #23 measured it against onnxruntime on
the x86 host), so a smaller difference between two predictions cannot be told from the model's
error. Replace it when calibration states the profile's accuracy, or per objective in the
config."""


def default_resolution(metric: str) -> Resolution:
    """The resolution of a metric when its objective states none: the cost model's for its
    predictions (`latency_ms`, `latency_ms@TARGET`, ...), exact otherwise."""
    return COST_MODEL_RESOLUTION if metric.partition("@")[0] in COST_METRICS else EXACT


def clearly_better(values: np.ndarray, resolutions: Sequence[Resolution]) -> np.ndarray:
    """Whether row a is better than row b on objective i by more than the objective's resolution.

    Args:
        values: Minimisation values, shape (rows, objectives).
        resolutions: One per objective.

    Returns:
        Boolean array of shape (rows, rows, objectives), indexed [a, b, i].
    """
    values = np.asarray(values, dtype=np.float64)
    first, second = values[:, None, :], values[None, :, :]
    better = np.minimum(first, second)
    tolerance = np.stack(
        [resolution.tolerance(better[..., index]) for index, resolution in enumerate(resolutions)], axis=-1
    )
    return second - first > tolerance


def beats(values: np.ndarray, resolutions: Sequence[Resolution]) -> np.ndarray:
    """Epsilon-dominance: [a, b] is whether row a is clearly better than row b on some objective
    and clearly worse on none. With every resolution exact this is Pareto dominance."""
    better = clearly_better(values, resolutions)
    return better.any(axis=-1) & ~better.transpose(1, 0, 2).any(axis=-1)


__all__ = [
    "COST_MODEL_RESOLUTION",
    "EXACT",
    "Resolution",
    "beats",
    "clearly_better",
    "default_resolution",
]
