"""`predictor-screened`: breed many candidates per generation, evaluate only those the predictor rates best.

On a per-layer space nearly every proposal is a new, seconds-long evaluation, and most of a
genetic algorithm's offspring are dominated. This sampler breeds `pool_factor` times a generation
of offspring from the measured front (uniform crossover of two front members, then a mutation
that moves one or a few knobs, bits preferably to a neighbouring width; a quarter of the pool is
drawn at random to keep exploring), predicts every objective of each with
`search.predictor.QualityPredictor` fitted on the trials measured so far, and keeps the
`population_size` with the largest predicted hypervolume improvement, chosen greedily: each
pick joins the front as if its prediction were measured, so the next pick improves on it (a
"believer" batch). Objectives are compared in minimisation form, scaled to the measured range.

Its first generation is the ILP's predicted front (`first_candidates`), so the predictor starts
from candidates spread over the whole trade-off. A parameter the space
did not produce (another objective's toy search space) is sampled at random, so the sampler
never fails a trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import moocore
import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.allocation import AllocationProblem, Assignment
from search.candidate_sampler import CandidateSampler
from search.candidate_sequences import Candidate, FirstCandidates, candidate_of
from search.predictor import QualityPredictor, prior_for

RANDOM_SHARE = 0.25
"""Share of each pool drawn uniformly at random rather than bred from the front."""
CROSSOVER = 0.5
"""Probability that a bred child mixes two front members (uniform crossover) before its mutation."""
NEIGHBOUR_STEP = 0.7
"""Probability that a mutated bits knob moves to a neighbouring width rather than any width."""
_REFERENCE = 1.1
"""Hypervolume reference point in the scaled objective space (the measured range is [0, 1])."""


class ScreenedSampler(CandidateSampler):
    """Proposes, per generation, the bred candidates with the best predicted hypervolume improvement.

    Args:
        space: The run's `SearchSpace` (candidates are resolved through it).
        problem: The ILP problem: the knobs bred over and the predictor's prior.
        population_size: Candidates evaluated per generation.
        seed: Seeds breeding, the predictor and the random fallback.
        first_candidates: The first generation (the ILP front), proposed before anything is bred.
        pool_factor: Candidates bred per evaluated one.
    """

    def __init__(
        self,
        space: Any,
        problem: AllocationProblem,
        population_size: int,
        seed: int,
        first_candidates: Sequence[Candidate] = (),
        pool_factor: int = 16,
    ) -> None:
        self.space = space
        self.problem = problem
        self.population_size = population_size
        self.pool_size = pool_factor * population_size
        self.first_candidates = FirstCandidates(first_candidates)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._fallback = RandomSampler(seed=seed)
        self._queue: list[Candidate] = []
        self._assigned: dict[int, Candidate] = {}

    def candidate_for(self, study: Study, trial: FrozenTrial) -> Candidate:
        if trial.number not in self._assigned:
            self._assigned[trial.number] = self._next_candidate(study, trial.number)
        return self._assigned[trial.number]

    def unnamed_parameter(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._assigned.pop(trial.number, None)

    def _next_candidate(self, study: Study, number: int) -> Candidate:
        """A first candidate while any is left, else the head of the screened queue (bred anew when empty)."""
        first = self.first_candidates.for_trial(study, number)
        if first is not None:
            return first
        if not self._queue:
            self._queue = self.screen(study)
        return self._queue.pop(0) if self._queue else {}

    def screen(self, study: Study) -> list[Candidate]:
        """The next generation: bred candidates ranked by predicted hypervolume improvement."""
        measured = [
            trial
            for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if trial.values is not None and all(np.isfinite(trial.values))
        ]
        signs = np.array([1.0 if direction == StudyDirection.MINIMIZE else -1.0 for direction in study.directions])
        observed = np.array([trial.values for trial in measured], dtype=float).reshape(len(measured), len(signs)) * signs
        assignments = [self.problem.assignment(trial.params) for trial in measured]
        seen = [trial.params for trial in study.get_trials(deepcopy=False)]
        pool = self._breed(self._parents(assignments, observed), seen)
        if not pool:
            return []
        names = study.metric_names or [None] * len(signs)
        predicted = np.column_stack(
            [
                QualityPredictor(self.problem, prior_for(names[column], self.problem), self.seed).fit(assignments, observed[:, column])
                .predict([assignment for assignment, _ in pool])
                for column in range(len(signs))
            ]
        )
        return [pool[index][1] for index in _greedy_improvement(observed, predicted, self.population_size)]

    def _parents(self, assignments: list[Assignment], observed: np.ndarray) -> list[Assignment]:
        """The measured front, or the first generation (or a random one) before anything is measured."""
        if assignments:
            front = moocore.is_nondominated(observed)
            return [assignment for assignment, keep in zip(assignments, front) if keep]
        if self.first_candidates.candidates:
            return [self.problem.assignment(candidate) for candidate in self.first_candidates.candidates]
        return [self._random_assignment()]

    def _breed(self, parents: list[Assignment], seen: list[Mapping[str, Any]]) -> list[tuple[Assignment, Candidate]]:
        """Up to `pool_size` distinct, valid, never-proposed offspring with their candidates."""
        pool: list[tuple[Assignment, Candidate]] = []
        known = [dict(params) for params in seen]
        for _ in range(4 * self.pool_size):
            if len(pool) >= self.pool_size:
                break
            if self._rng.random() < RANDOM_SHARE:
                child = self._random_assignment()
            else:
                child = dict(parents[self._rng.integers(len(parents))])
                if len(parents) > 1 and self._rng.random() < CROSSOVER:
                    other = parents[self._rng.integers(len(parents))]
                    child = {knob: (value if self._rng.random() < 0.5 else other[knob]) for knob, value in child.items()}
                child = self._mutate(child)
            candidate = self._candidate(child)
            if candidate is not None and candidate not in known:
                known.append(candidate)
                pool.append((child, candidate))
        return pool

    def _candidate(self, assignment: Assignment) -> Candidate | None:
        try:
            self.problem.cost(assignment)
        except ValueError:  # a width the chosen quantizer does not allow
            return None
        return candidate_of(self.space, assignment)

    def _mutate(self, assignment: Assignment) -> Assignment:
        """Each knob moves with probability 1/knobs (at least one does)."""
        knobs = list(self.problem.knobs)
        moving = [knob for knob in knobs if self._rng.random() < 1.0 / len(knobs)] or [knobs[self._rng.integers(len(knobs))]]
        mutated = dict(assignment)
        for knob in moving:
            values = self.problem.knobs[knob]
            if knob in self.problem.bits_knobs and self._rng.random() < NEIGHBOUR_STEP:
                position = values.index(mutated[knob]) + (1 if self._rng.random() < 0.5 else -1)
                mutated[knob] = values[min(max(position, 0), len(values) - 1)]
            else:
                mutated[knob] = values[self._rng.integers(len(values))]
        return mutated

    def _random_assignment(self) -> Assignment:
        return {knob: values[self._rng.integers(len(values))] for knob, values in self.problem.knobs.items()}


def _greedy_improvement(observed: np.ndarray, predicted: np.ndarray, count: int) -> list[int]:
    """Indices of `count` predicted points, each adding the most hypervolume to the front so far.

    Both arrays are in minimisation form; they are scaled to the measured range (the predicted
    range before anything is measured). A pick that adds nothing (all remaining points are
    predicted dominated) falls back to the smallest sum of scaled objectives.
    """
    basis = observed if len(observed) >= 2 else np.vstack([observed, predicted])
    low, high = basis.min(axis=0), basis.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    front = (observed - low) / scale
    points = (predicted - low) / scale
    reference = np.full(points.shape[1], _REFERENCE)
    remaining = list(range(len(points)))
    chosen: list[int] = []
    while remaining and len(chosen) < count:
        current = _hypervolume(front, reference)
        gains = [_hypervolume(np.vstack([front, points[index]]), reference) - current for index in remaining]
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            best = int(np.argmin([points[index].sum() for index in remaining]))
        index = remaining.pop(best)
        chosen.append(index)
        front = np.vstack([front, points[index]])
    return chosen


def _hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    inside = points[(points < reference).all(axis=1)] if len(points) else points
    return float(moocore.hypervolume(inside, ref=reference)) if len(inside) else 0.0


__all__ = ["ScreenedSampler"]
