"""The `search.sampler` choices as Optuna samplers, baselines included, for one engine loop.

`nsga2`, `tpe`, `gp` and `random` are Optuna's samplers. `uniform-grid` and
`sensitivity-greedy` replay a fixed candidate list (`search.candidate_sequences`) through
`CandidateSequenceSampler`, so every baseline is proposed, evaluated, recorded and priced by the
same loop as the model-based samplers. Constraints reach the samplers that use them through
`Trial.set_constraint` (the engine sets them on every trial); the others ignore them and the
engine keeps infeasible trials off the front itself.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from search.candidate_sequences import Candidate, sensitivity_greedy_candidates, uniform_grid_candidates
from search.config import ConfigError

SEQUENCE_SAMPLERS = ("uniform-grid", "sensitivity-greedy")
"""Samplers that replay a finite candidate list; the search ends when it is used up."""


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II sampler, picklable again.

    Ray Tune pickles the searcher, and the sampler inside it, into its experiment state. Since
    Optuna 5.1 the genetic samplers hold a `threading.Lock` around their generation cache, which
    pickle refuses. This class pickles everything but the lock and makes a fresh lock on load.
    The lock only guards one process's threads, so nothing is lost.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


class SamplerError(ConfigError):
    """A sampler that cannot be built for this run (e.g. no sensitivities for sensitivity-greedy)."""


class CandidateSequenceSampler(BaseSampler):
    """Proposes a fixed list of candidates in order: the trial numbered n gets `candidates[n]`.

    Indexing by trial number keeps the order across a resumed study. A knob the candidate does
    not name takes its first choice (or the low end of its range).
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            raise SamplerError("the candidate sequence is empty: the space rejected every generated candidate")
        self.candidates = [dict(candidate) for candidate in candidates]

    def __len__(self) -> int:
        return len(self.candidates)

    def exhausted(self, study: Study) -> bool:
        """Whether every candidate has been handed to a trial of `study`."""
        return len(study.get_trials(deepcopy=False)) >= len(self.candidates)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if trial.number >= len(self.candidates):
            raise SamplerError(f"trial {trial.number}: the sequence of {len(self.candidates)} candidates is used up")
        candidate = self.candidates[trial.number]
        if param_name in candidate:
            return candidate[param_name]
        if isinstance(param_distribution, CategoricalDistribution):
            return param_distribution.choices[0]
        return param_distribution.low  # type: ignore[attr-defined]


def layer_params(space: Any, teacher_state: Mapping[str, Any]) -> dict[str, int]:
    """Weights per quantizable layer of the space (weighting the sensitivity-greedy steps)."""
    layers = [layer for group in space.groups.values() for layer in group]
    weights = {layer: teacher_state.get(f"{layer}.weight") for layer in layers}
    return {layer: int(weight.numel()) for layer, weight in weights.items() if weight is not None}


def build_sampler(
    name: str,
    *,
    seed: int,
    population_size: int,
    space: Any,
    sensitivities: Mapping[str, float] | None = None,
    layer_params: Mapping[str, int] | None = None,
) -> BaseSampler:
    """The sampler called `name` (one of `search.config.SAMPLERS`), seeded.

    Args:
        space: The run's `SearchSpace` (the sequence samplers enumerate its bits knobs).
        sensitivities: Per quantizable layer, for `sensitivity-greedy`.
        layer_params: Parameters per quantizable layer, weighting the greedy steps.

    Raises:
        SamplerError: Unknown name, or `sensitivity-greedy` without sensitivities.
    """
    if name == "nsga2":
        return PicklableNSGAIISampler(population_size=population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        with warnings.catch_warnings():  # `deterministic_objective` is flagged experimental; metrics are seeded
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "uniform-grid":
        return CandidateSequenceSampler(uniform_grid_candidates(space))
    if name == "sensitivity-greedy":
        if not sensitivities:
            raise SamplerError("search.sampler='sensitivity-greedy': the evaluator provides no layer sensitivities")
        try:
            path = sensitivity_greedy_candidates(space, sensitivities, layer_params or {})
        except ValueError as error:
            raise SamplerError(f"search.sampler='sensitivity-greedy': {error}") from None
        return CandidateSequenceSampler(path)
    raise SamplerError(f"search.sampler={name!r}: unknown")
