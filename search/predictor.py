"""A learned predictor of a trial's objectives from its knobs: an additive prior plus a fitted correction.

The prior is what the ILP knows before any trial runs (`search.allocation.AllocationProblem`):
the summed damage of the chosen cells for a quality objective, the predicted packed size and
cost-model latency for those objectives (`PRIORS`). Measured values relate to it monotonically but
not linearly (EER saturates, a few layers interact), so the predictor fits

    value ~ a + b * prior + correction(features, prior)

by least squares for `a, b`, then a gradient-boosted regression tree ensemble (scikit-learn) on
the residuals, over each bits knob's width, each quantizer knob's one-hot choice and the prior
itself. With few trials the trees would fit noise, so below `min_correction` trials only the
linear map of the prior is used; with no trial at all the prior itself ranks candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from search.allocation import AllocationProblem, Cost

Prior = Callable[[Cost], float]

PRIORS: dict[str, Prior] = {
    "size_bytes": lambda cost: cost.size_bytes,
    "latency_ms": lambda cost: cost.latency_ms,
}
"""Objective metric -> the part of the predicted cost that is its prior; any other metric (quality) uses the damage."""


def prior_for(metric: str | None) -> Prior:
    """The prior of an objective: its entry in `PRIORS`, else the predicted damage."""
    return PRIORS.get(metric or "", lambda cost: cost.damage)


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


class QualityPredictor:
    """Predicts one objective of candidates (as ILP assignments) from its prior and a fitted correction.

    Args:
        problem: The ILP problem whose cost model gives the prior and whose knobs the features.
        prior: Which part of the predicted cost is this objective's prior (`prior_for`).
        seed: Seeds the tree ensemble's subsampling.
        min_correction: Fitted trials below which no correction is fitted.
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
        """Fit the line on the prior and, with enough trials, the correction of its residuals."""
        targets = np.asarray(values, dtype=float)
        priors = self.priors(assignments)
        self._correction = None
        if len(targets) == 0:
            self._line = (0.0, 1.0)
            return self
        if len(targets) >= 2 and np.ptp(priors) > 0:
            slope, intercept = np.polyfit(priors, targets, 1)
            self._line = (float(intercept), float(slope))
        else:
            self._line = (float(targets.mean()), 0.0)
        if len(targets) >= self.min_correction:
            residuals = targets - self._linear(priors)
            self._correction = GradientBoostingRegressor(
                n_estimators=100, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=self.seed
            ).fit(self._features(assignments, priors), residuals)
        return self

    def predict(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        priors = self.priors(assignments)
        predicted = self._linear(priors)
        if self._correction is not None and len(assignments):
            predicted = predicted + self._correction.predict(self._features(assignments, priors))
        return predicted

    def _linear(self, priors: np.ndarray) -> np.ndarray:
        intercept, slope = self._line
        return intercept + slope * priors

    def _features(self, assignments: Sequence[Mapping[str, Any]], priors: np.ndarray) -> np.ndarray:
        return np.column_stack([self.encoder.features(assignments), priors])


__all__ = ["PRIORS", "CandidateEncoder", "QualityPredictor", "prior_for"]
