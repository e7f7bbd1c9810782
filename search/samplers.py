"""The `search.sampler` choices as Optuna samplers, baselines included, for one engine loop.

`SAMPLER_KINDS` is the one registry of choices: the config validates `search.sampler` against
`SAMPLER_NAMES`, and the engine builds the sampler and asks whether it replays a sequence through
it. `nsga2`, `tpe`, `gp` and `random` are Optuna's samplers. `uniform-grid`,
`sensitivity-greedy` and `ilp` replay a fixed candidate list (`search.candidate_sequences`)
through `CandidateSequenceSampler`, so every baseline is proposed, evaluated, recorded and priced
by the same loop as the model-based samplers. Constraints reach the samplers that use them through
`Trial.set_constraint` (the engine sets them on every trial); the others ignore them and the
engine keeps infeasible trials off the front itself.

Warm starts (`search.candidate_sequences.FirstCandidates`, handed to the first trials after the
config's baselines): `nsga2` starts from `warm_start_candidates`, every uniform width of the space
and the ILP's predicted rivals of each at or below the widest uniform model's size, each within one
width of a uniform model, so its first generations hold the uniform models and the mixed
assignments predicted to beat them; the config's baselines are among those candidates and run
once. `predictor-screened` starts from a spread of the ILP's predicted front (`search.allocation`),
so its predictor first sees the whole trade-off.
The ILP needs the run's `allocation` (its priced knob choices), which the engine computes only
when a sampler asks for it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from search.allocation import AllocationProblem, spread
from search.candidate_sampler import CandidateSampler
from search.candidate_sequences import (
    Candidate,
    FirstCandidates,
    ilp_candidates,
    sensitivity_greedy_candidates,
    uniform_grid_candidates,
    warm_start_candidates,
)
from search.choice_costs import AllocationUnavailable
from search.screened_sampler import ScreenedSampler


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


class WarmStartedNSGAIISampler(PicklableNSGAIISampler):
    """NSGA-II whose first trials after the baselines take `first_candidates` (the warm start).

    NSGA-II samples its first generation independently (at random); these trials take the given
    candidates instead and keep NSGA-II's bookkeeping, so they are members of the generations
    they start in and parents of the next.
    """

    def __init__(self, *, first_candidates: Sequence[Candidate] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_candidates = FirstCandidates(first_candidates)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Enter every trial in a generation as it starts.

        Optuna's NSGA-II enters a trial in a generation only in `sample_relative`, which a trial
        whose parameters are all fixed (an enqueued baseline) never calls, and which returns
        early here for a warm-start trial; a trial in no generation is never anyone's parent, so
        the next generation would be drawn at random.
        """
        super().before_trial(study, trial)
        self.get_trial_generation(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self.first_candidates.for_trial(study, trial.number) is not None:
            return {}
        return super().sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        candidate = self.first_candidates.for_trial(study, trial.number)
        if candidate is not None and param_name in candidate:
            return candidate[param_name]
        return super().sample_independent(study, trial, param_name, param_distribution)


class SamplerError(ValueError):
    """A sampler that cannot be built for this run (unknown name, no sensitivities or no allocation it needs).

    A `ValueError` rather than a `search.config.ConfigError`: the config takes its sampler names
    from this module, so this module cannot import the config. The CLI lists it among the errors a
    user can fix and prints it as one line with exit code 2.
    """


class CandidateSequenceSampler(CandidateSampler):
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

    def candidate_for(self, study: Study, trial: FrozenTrial) -> Candidate:
        if trial.number >= len(self.candidates):
            raise SamplerError(f"trial {trial.number}: the sequence of {len(self.candidates)} candidates is used up")
        return self.candidates[trial.number]

    def unnamed_parameter(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if isinstance(param_distribution, CategoricalDistribution):
            return param_distribution.choices[0]
        return param_distribution.low  # type: ignore[attr-defined]


def layer_params(space: Any, teacher_state: Mapping[str, Any]) -> dict[str, int]:
    """Weights per quantizable layer of the space (weighting the sensitivity-greedy steps)."""
    layers = [layer for group in space.groups.values() for layer in group]
    weights = {layer: teacher_state.get(f"{layer}.weight") for layer in layers}
    return {layer: int(weight.numel()) for layer, weight in weights.items() if weight is not None}


@dataclass(frozen=True)
class SamplerContext:
    """What the run offers a sampler factory; each kind takes the parts it needs.

    Attributes:
        seed: The run's seed.
        population_size: NSGA-II's generation size.
        space: The run's `SearchSpace` (the sequence samplers enumerate its bits knobs).
        sensitivities: Per quantizable layer, for `sensitivity-greedy`.
        layer_params: Parameters per quantizable layer, weighting the greedy steps.
        allocation: Builds the run's ILP problem (`search.sensitivity_tables.AllocationSource`):
            needed by `ilp` and `predictor-screened`, used by `nsga2` for its warm start.
    """

    seed: int
    population_size: int
    space: Any
    sensitivities: Mapping[str, float] | None = None
    layer_params: Mapping[str, int] | None = None
    allocation: Callable[[], AllocationProblem] | None = None


@dataclass(frozen=True)
class SamplerKind:
    """One `search.sampler` choice.

    Attributes:
        name: The value of `search.sampler` (and `search run --sampler`).
        build: Makes the seeded sampler for a run.
        replays_sequence: Proposes a fixed candidate list indexed by trial number, so nothing may
            be enqueued before it, and the search ends when the list is used up.
        help: One line telling a user what the sampler does.
    """

    name: str
    build: Callable[[SamplerContext], BaseSampler]
    replays_sequence: bool
    help: str


def _nsga2(context: SamplerContext) -> BaseSampler:
    return WarmStartedNSGAIISampler(
        population_size=context.population_size,
        seed=context.seed,
        first_candidates=warm_start_candidates(context.space, _priced_if_possible(context)),
    )


def _tpe(context: SamplerContext) -> BaseSampler:
    return optuna.samplers.TPESampler(seed=context.seed, multivariate=True)


def _gp(context: SamplerContext) -> BaseSampler:
    with warnings.catch_warnings():  # `deterministic_objective` is flagged experimental; metrics are seeded
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=context.seed, deterministic_objective=True)


def _random(context: SamplerContext) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=context.seed)


def _uniform_grid(context: SamplerContext) -> BaseSampler:
    return CandidateSequenceSampler(uniform_grid_candidates(context.space))


def _sensitivity_greedy(context: SamplerContext) -> BaseSampler:
    if not context.sensitivities:
        raise SamplerError("search.sampler='sensitivity-greedy': the evaluator provides no layer sensitivities")
    try:
        path = sensitivity_greedy_candidates(context.space, context.sensitivities, context.layer_params or {})
    except ValueError as error:
        raise SamplerError(f"search.sampler='sensitivity-greedy': {error}") from None
    return CandidateSequenceSampler(path)


def _priced_if_possible(context: SamplerContext) -> AllocationProblem | None:
    """The run's ILP problem, or None without a teacher or for a space the ILP cannot price (the
    warm start then holds the uniform grid alone)."""
    if context.allocation is None:
        return None
    try:
        return context.allocation()
    except AllocationUnavailable:
        return None


def _allocation(context: SamplerContext, name: str) -> AllocationProblem:
    if context.allocation is None:
        raise SamplerError(f"search.sampler={name!r}: needs the run's teacher to price the knob choices")
    try:
        return context.allocation()
    except AllocationUnavailable as error:
        raise SamplerError(f"search.sampler={name!r}: {error}") from None


def _ilp(context: SamplerContext) -> BaseSampler:
    return CandidateSequenceSampler(ilp_candidates(context.space, _allocation(context, "ilp")))


def _predictor_screened(context: SamplerContext) -> BaseSampler:
    problem = _allocation(context, "predictor-screened")
    first = spread(ilp_candidates(context.space, problem), context.population_size)
    return ScreenedSampler(context.space, problem, context.population_size, context.seed, first_candidates=first)


SAMPLER_KINDS: dict[str, SamplerKind] = {
    kind.name: kind
    for kind in (
        SamplerKind(
            "nsga2",
            _nsga2,
            False,
            "NSGA-II genetic search, constraint-aware, first every uniform width and the ILP's mixed rivals of each",
        ),
        SamplerKind("tpe", _tpe, False, "multivariate tree-structured Parzen estimator, constraint-aware"),
        SamplerKind("gp", _gp, False, "Gaussian-process Bayesian optimisation, constraint-aware"),
        SamplerKind("random", _random, False, "uniform random candidates (baseline)"),
        SamplerKind("uniform-grid", _uniform_grid, True, "one bit width everywhere, widest first (baseline)"),
        SamplerKind(
            "sensitivity-greedy",
            _sensitivity_greedy,
            True,
            "lowers one layer group a step at a time, least damage per bit saved first (baseline, needs sensitivities)",
        ),
        SamplerKind(
            "ilp",
            _ilp,
            True,
            "HAWQ-V3 integer programme over a grid of size and latency budgets: evaluates its predicted front only",
        ),
        SamplerKind(
            "predictor-screened",
            _predictor_screened,
            False,
            "breeds many candidates per generation, evaluates those a learned predictor rates best (ILP front first)",
        ),
    )
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLER_KINDS)
"""The allowed `search.sampler` values, in the order a user sees them."""


def get_sampler_kind(name: str) -> SamplerKind:
    """The registered sampler called `name`.

    Raises:
        SamplerError: No sampler has that name; the message lists the available ones.
    """
    if name not in SAMPLER_KINDS:
        raise SamplerError(f"search.sampler={name!r}: unknown; available: {', '.join(SAMPLER_NAMES)}")
    return SAMPLER_KINDS[name]


def build_sampler(
    name: str,
    *,
    seed: int,
    population_size: int,
    space: Any,
    sensitivities: Mapping[str, float] | None = None,
    layer_params: Mapping[str, int] | None = None,
    allocation: Callable[[], AllocationProblem] | None = None,
) -> BaseSampler:
    """The sampler called `name` (one of `SAMPLER_NAMES`), seeded; arguments as in `SamplerContext`.

    Raises:
        SamplerError: Unknown name, `sensitivity-greedy` without sensitivities, or `ilp` and
            `predictor-screened` without an allocation (or with a space it cannot price).
    """
    context = SamplerContext(seed, population_size, space, sensitivities, layer_params, allocation)
    return get_sampler_kind(name).build(context)


__all__ = [
    "SAMPLER_KINDS",
    "SAMPLER_NAMES",
    "CandidateSequenceSampler",
    "PicklableNSGAIISampler",
    "WarmStartedNSGAIISampler",
    "SamplerContext",
    "SamplerError",
    "SamplerKind",
    "build_sampler",
    "get_sampler_kind",
    "layer_params",
]
