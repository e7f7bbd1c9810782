"""A learned predictor of a trial's objectives from its knobs: an additive prior plus a fitted correction.

The prior is what the ILP knows before any trial runs (`search.allocation.AllocationProblem`):
the summed damage of the chosen cells for a quality objective, the predicted packed size and
cost-model latency for those objectives (`prior_for`). Measured values relate to it monotonically
but not linearly, so the predictor fits

    value ~ a + b * prior + correction(features, prior)

with `b >= 0`, then a gradient-boosted regression tree ensemble (scikit-learn) on the residuals,
over each bits knob's width, each quantizer knob's one-hot choice and the prior itself.

Three choices keep it honest on the few, noisy trials a search has:

- The damage prior is taken on a log scale. Summed damages span orders of magnitude (a layer at
  2 bits can outweigh every other change together) while EER saturates, so a line on the raw
  damage is fitted to a few outliers and flattens the rest.
- The slope is never negative: more predicted damage cannot mean better quality, more bytes
  fewer bytes. A negative least-squares slope is noise in a handful of trials; the line then keeps
  the prior's order, scaled to the trials' spread.
- The correction is kept only when it predicts better than the line alone in a K-fold
  cross-validation over the fitted trials; trees on a few dozen trials of 40 knobs can fit noise.
  Below `min_correction` trials none is tried; with no trial at all the prior itself ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold

from search.allocation import AllocationProblem, Cost

Prior = Callable[[Cost], float]

_COST_PRIORS: dict[str, Prior] = {
    "size_bytes": lambda cost: cost.size_bytes,
    "latency_ms": lambda cost: cost.latency_ms,
}
"""Objective metric -> the part of the predicted cost that is its prior (additive, so linear)."""

CROSS_VALIDATION_FOLDS = 5


def log_damage(problem: AllocationProblem) -> Prior:
    """The damage prior on a log scale, offset by the median damage of one positive cell.

    The offset makes it scale-free (damages are in the loss's units) and keeps an undamaged
    candidate (FP32, or layers whose measured sensitivity is zero) finite and close to the
    least damaged ones rather than infinitely far below them.
    """
    positive = [cell.cost.damage for cell in problem.cells if cell.cost.damage > 0]
    offset = float(np.median(positive)) if positive else 1.0
    return lambda cost: math.log(max(cost.damage, 0.0) + offset)


def prior_for(metric: str | None, problem: AllocationProblem) -> Prior:
    """The prior of an objective: size or latency as predicted, any other metric (quality) the log damage."""
    return _COST_PRIORS.get(metric or "") or log_damage(problem)


@dataclass(frozen=True)
class CandidateEncoder:
    """Candidates as feature rows: each bits knob's width, then a one-hot per quantizer knob choice."""

    problem: AllocationProblem

    def features(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        rows = []
        for assignment in assignments:
            row = [float(assignment[knob]) for knob in self.problem.bits_knobs]
            for knob, choices in self.problem.quantizer_knobs.items():
                row.extend(float(assignment[knob] == choice) for choice in choices)
            rows.append(row)
        return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def monotone_line(priors: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(intercept, slope >= 0) of targets on priors: least squares, or the prior's order at the targets' spread.

    A non-positive least-squares slope would invert or erase the prior's ranking on the strength of
    a few noisy trials; instead the prior is scaled to the targets' mean and standard deviation.
    """
    if len(targets) < 2 or np.ptp(priors) == 0:
        return (float(targets.mean()) if len(targets) else 0.0, 0.0 if len(targets) else 1.0)
    slope, intercept = np.polyfit(priors, targets, 1)
    if slope <= 0:
        slope = float(np.std(targets) / np.std(priors))
        intercept = float(targets.mean() - slope * priors.mean())
    return float(intercept), float(slope)


def _on_line(line: tuple[float, float], priors: np.ndarray) -> np.ndarray:
    intercept, slope = line
    return intercept + slope * priors


class QualityPredictor:
    """Predicts one objective of candidates (as ILP assignments) from its prior and a fitted correction.

    Args:
        problem: The ILP problem whose cost model gives the prior and whose knobs the features.
        prior: Which part of the predicted cost is this objective's prior (`prior_for`).
        seed: Seeds the tree ensemble's subsampling and the cross-validation folds.
        min_correction: Fitted trials below which no correction is tried.
    """

    def __init__(self, problem: AllocationProblem, prior: Prior, seed: int = 0, min_correction: int = 8) -> None:
        self.problem = problem
        self.prior = prior
        self.encoder = CandidateEncoder(problem)
        self.seed = seed
        self.min_correction = min_correction
        self._line = (0.0, 1.0)
        self._correction: GradientBoostingRegressor | None = None

    def priors(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.asarray([self.prior(self.problem.cost(assignment)) for assignment in assignments], dtype=float)

    def fit(self, assignments: Sequence[Mapping[str, Any]], values: Sequence[float]) -> QualityPredictor:
        """Fit the line on the prior and, when it cross-validates better, the correction of its residuals."""
        targets = np.asarray(values, dtype=float)
        priors = self.priors(assignments)
        self._line = monotone_line(priors, targets)
        self._correction = None
        if len(targets) >= self.min_correction:
            features = self._features(assignments, priors)
            if self._correction_generalises(features, priors, targets):
                self._correction = self._fit_correction(features, targets - self._linear(priors))
        return self

    def predict(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        priors = self.priors(assignments)
        predicted = self._linear(priors)
        if self._correction is not None and len(assignments):
            predicted = predicted + self._correction.predict(self._features(assignments, priors))
        return predicted

    @property
    def corrected(self) -> bool:
        """Whether the last fit kept a correction (it cross-validated better than the line)."""
        return self._correction is not None

    def _correction_generalises(self, features: np.ndarray, priors: np.ndarray, targets: np.ndarray) -> bool:
        """Whether line + correction has a lower K-fold squared error than the line alone."""
        folds = KFold(min(CROSS_VALIDATION_FOLDS, len(targets)), shuffle=True, random_state=self.seed)
        line_error = corrected_error = 0.0
        for train, test in folds.split(features):
            line = monotone_line(priors[train], targets[train])
            line_test = _on_line(line, priors[test])
            correction = self._fit_correction(features[train], targets[train] - _on_line(line, priors[train]))
            line_error += float(np.sum((line_test - targets[test]) ** 2))
            corrected_error += float(np.sum((line_test + correction.predict(features[test]) - targets[test]) ** 2))
        return corrected_error < line_error

    def _fit_correction(self, features: np.ndarray, residuals: np.ndarray) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=100, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=self.seed
        ).fit(features, residuals)

    def _linear(self, priors: np.ndarray) -> np.ndarray:
        return _on_line(self._line, priors)

    def _features(self, assignments: Sequence[Mapping[str, Any]], priors: np.ndarray) -> np.ndarray:
        return np.column_stack([self.encoder.features(assignments), priors])


__all__ = ["CandidateEncoder", "QualityPredictor", "log_damage", "monotone_line", "prior_for"]
