"""The candidate lists the baseline samplers replay and a warm start hands out: one bit width
everywhere, the ILP's predicted front, sensitivity-ordered bit lowering, and the warm start.

They are generated over the space's bits and quantizer knobs (`SearchSpace.groups`); every other
knob is resolved the way the space's own define-by-run function resolves it, at its first choice
(or the low end of its range) in the uniform grid and the greedy path, at its declared default in
the ILP's candidates and the warm start (`candidate_of`). A generated candidate the space rejects
is left out, so the lists stay valid for knob sets this module does not know.

- `uniform_grid_candidates`: the seeds' method (Li et al. 2022): every bits knob at the same
  width, for every quantized width and every quantizer the space offers, widest first (FP32 is
  the reference row already).
- `ilp_candidates`: HAWQ-V3's integer linear programme (`search.allocation`) over a grid of size
  and latency budgets: the predicted front, largest predicted size first.
- `warm_start_candidates`: what a practitioner evaluates before searching. First the uniform grid
  (every width, every quantizer), built as the config's baselines are, with every other knob at
  its default, so a baseline the engine enqueued is the same candidate and runs once. Then the
  ILP's least-damage mixed assignment no larger than each uniform point, and no larger than the
  geometric mean of each two neighbouring points' sizes: the predicted rivals of the uniform
  models, spread over the sizes where compression happens (at or below the widest uniform model,
  the 8-bit one in most spaces). Each rival keeps every bits knob within one step of the width of
  the widest uniform model that fits its size (`near_widths`): the damage table is a model of each
  layer quantized alone, and a second-order one for the default estimator, so it is trusted for
  small moves away from a uniform model, not for dropping a layer several widths below the rest.
  A layer whose loss is flat around the teacher's weights (ECAPA-TDNN's attentive pooling) is
  priced near zero at every width, yet hurts at 2 bits; unconstrained, the ILP would put every such
  layer at the narrowest width in every rival, whatever its size.
- `sensitivity_greedy_candidates`: Liu et al. 2024 / HAWQ style. Starting from every group at its
  widest quantized choice, repeatedly lower one group by one step, choosing the group whose step costs the
  least predicted damage per bit saved. A group's damage at b bits is its sensitivity (the loss
  change when that group alone is quantized) times 4^-b, the power of uniform quantization noise,
  so a sensitive group is lowered late and a large, insensitive one early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from search.allocation import AllocationProblem, least_damage_within_sizes, predicted_front
from spaces.description import FLOAT_BITS
from spaces.knobs import BITS, QUANTIZER
from spaces.quant import QUANTIZERS

Candidate = dict[str, Any]
SearchSpaceLike = Any
"""A `spaces.space.SearchSpace`: `.groups`, `.knobs`, `.suggest(trial)` and `.plan(candidate)` are used."""


class _NotInSpace(Exception):
    """A forced knob value the space does not offer."""


class _ResolvingTrial:
    """A stand-in for `optuna.Trial` that answers the space's suggestions from a partial candidate.

    Knobs named in `forced` take that value (or the candidate is rejected when the space does not
    offer it); any other knob takes its first choice or the low end of its range. A parameter named
    `KNOB@VARIANT` (a bits knob whose choices depend on the quantizer chosen) counts as `KNOB`.
    """

    def __init__(self, forced: Mapping[str, Any]) -> None:
        self.forced = forced
        self.params: Candidate = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        knob = _knob_name(name)
        if knob in self.forced:
            if self.forced[knob] not in choices:
                raise _NotInSpace(name)
            return self._set(name, self.forced[knob])
        return self._set(name, choices[0])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._set(name, self._ranged(name, low, high))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._set(name, self._ranged(name, low, high))

    def _ranged(self, name: str, low: Any, high: Any) -> Any:
        value = self.forced.get(_knob_name(name), low)
        if not low <= value <= high:
            raise _NotInSpace(name)
        return value

    def _set(self, name: str, value: Any) -> Any:
        self.params[name] = value
        return value


def resolve_candidate(space: SearchSpaceLike, forced: Mapping[str, Any]) -> Candidate | None:
    """The full candidate the space builds with `forced` knob values, or None if it rejects them."""
    trial = _ResolvingTrial(forced)
    try:
        space.suggest(trial)
        space.plan(trial.params)
    except (_NotInSpace, ValueError):
        return None
    return trial.params


def candidate_of(space: SearchSpaceLike, assignment: Mapping[str, Any]) -> Candidate | None:
    """The candidate with the assignment's bits and quantizer knobs and every other knob at its
    declared default (not its first choice), or None when the space rejects it."""
    defaults = {knob.name: knob.default for knob in space.compiled_knobs if knob.role not in (BITS, QUANTIZER)}
    return resolve_candidate(space, {**defaults, **assignment})


class FirstCandidates:
    """A warm start: a list of candidates the sampler hands, in order, to the first trials that ask.

    A candidate some trial of the study already has (a baseline, an earlier run's trial after a
    resume) is skipped, so each is evaluated once; handing them out through the sampler, rather
    than enqueueing them, never leaves more waiting in the study than the budget runs.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = [dict(candidate) for candidate in candidates]
        self._assigned: dict[int, Candidate] = {}
        self._used_up = not self.candidates

    def __len__(self) -> int:
        return len(self.candidates)

    def for_trial(self, study: Any, number: int) -> Candidate | None:
        """The trial's first candidate, or None once every candidate is taken."""
        if number not in self._assigned:
            if self._used_up:
                return None
            taken = [trial.params for trial in study.get_trials(deepcopy=False) if trial.number != number]
            taken += list(self._assigned.values())
            candidate = next((candidate for candidate in self.candidates if candidate not in taken), None)
            if candidate is None:
                self._used_up = True
                return None
            self._assigned[number] = candidate
        return self._assigned[number]


def quantizer_knobs(space: SearchSpaceLike) -> dict[str, tuple[str, ...]]:
    """Knobs whose choices are all registered quantizer names (the space's quantizer choices)."""
    return {
        name: tuple(choices)
        for name, choices in space.knobs.items()
        if isinstance(choices, (list, tuple)) and choices and all(choice in QUANTIZERS for choice in choices)
    }


def bits_choices(space: SearchSpaceLike, knob: str) -> tuple[int, ...]:
    """Every width a bits knob may take, over all its quantizer-dependent variants."""
    widths = {
        bits
        for name, choices in space.knobs.items()
        if _knob_name(name) == knob and isinstance(choices, (list, tuple))
        for bits in choices
    }
    return tuple(sorted(widths))


def uniform_grid_candidates(
    space: SearchSpaceLike, resolve: Callable[[SearchSpaceLike, Candidate], Candidate | None] = resolve_candidate
) -> list[Candidate]:
    """Every bits knob at one width, for each width (widest first) and each quantizer choice.

    `resolve` builds a candidate from its bits and quantizer knobs: every other knob at its first
    choice by default (`resolve_candidate`), at its declared default with `candidate_of`.
    """
    widths = _quantized_ladder({bits for name in space.groups for bits in bits_choices(space, name)})
    quantizer_choices = quantizer_knobs(space)
    quantizers = list(dict.fromkeys(choice for choices in quantizer_choices.values() for choice in choices)) or [None]
    candidates: list[Candidate] = []
    for quantizer in quantizers:
        for bits in widths:
            forced: Candidate = {name: bits for name in space.groups}
            if quantizer is not None:
                forced.update({name: quantizer for name, choices in quantizer_choices.items() if quantizer in choices})
            candidate = resolve(space, forced)
            if candidate is not None and candidate not in candidates:
                candidates.append(candidate)
    return candidates


def ilp_candidates(space: SearchSpaceLike, problem: AllocationProblem) -> list[Candidate]:
    """The ILP's predicted front as candidates, largest predicted size first.

    The all-FP32 assignment (the least damage when budgets are loose) is left out: it is the
    reference row already.
    """
    candidates: list[Candidate] = []
    for allocation in predicted_front(problem):
        if all(allocation.assignment[knob] == FLOAT_BITS for knob in problem.bits_knobs):
            continue
        candidate = candidate_of(space, allocation.assignment)
        if candidate is not None and candidate not in candidates:
            candidates.append(candidate)
    return candidates


def warm_start_candidates(space: SearchSpaceLike, problem: AllocationProblem | None) -> list[Candidate]:
    """The uniform grid at the knobs' defaults, then the ILP's rivals of its points, each near the
    widest uniform model no larger (module docstring), largest predicted size first.

    Without an ILP problem (`None`: no teacher to price the choices, or a space the ILP cannot
    price) the uniform grid alone.
    """
    uniform = uniform_grid_candidates(space, resolve=candidate_of)
    if problem is None:
        return uniform
    first_knob = next(iter(problem.bits_knobs))
    assignments = [problem.assignment(candidate) for candidate in uniform]
    widths = {problem.cost(assignment).size_bytes: assignment[first_knob] for assignment in assignments}
    sizes = sorted(widths)
    between = [math.sqrt(smaller * larger) for smaller, larger in zip(sizes, sizes[1:])]
    rivals = []
    for budget in [*sizes, *between]:
        fitting = widths[max(size for size in sizes if size <= budget)]  # the widest uniform model no larger
        rivals += least_damage_within_sizes(problem.limited_to(near_widths(problem, fitting)), [budget])
    candidates = list(uniform)
    for allocation in sorted(rivals, key=lambda allocation: -allocation.cost.size_bytes):
        candidate = candidate_of(space, allocation.assignment)
        if candidate is not None and candidate not in candidates:
            candidates.append(candidate)
    return candidates


def near_widths(problem: AllocationProblem, bits: int) -> dict[str, tuple[int, ...]]:
    """Per bits knob: `bits` and its neighbouring widths on the knob's ladder (FP32 is the step above 8)."""
    near = {}
    for knob, widths in problem.bits_knobs.items():
        ladder = sorted(widths)
        below, above = [w for w in ladder if w < bits][-1:], [w for w in ladder if w > bits][:1]
        near[knob] = (*below, *([bits] if bits in ladder else []), *above)
    return near


def group_sensitivities(
    space: SearchSpaceLike, layer_sensitivities: Mapping[str, float], layer_params: Mapping[str, int]
) -> dict[str, tuple[float, int]]:
    """Per bits knob: the summed sensitivity (negative values count as 0) and parameter count of its layers.

    Raises:
        ValueError: If no layer of the space has a sensitivity (they were computed for another model).
    """
    covered = [layer for layers in space.groups.values() for layer in layers if layer in layer_sensitivities]
    if not covered:
        raise ValueError(
            f"sensitivities name none of the space's layers; they cover {sorted(layer_sensitivities)[:5]}..."
        )
    return {
        name: (
            sum(max(0.0, float(layer_sensitivities.get(layer, 0.0))) for layer in layers),
            sum(int(layer_params.get(layer, 1)) for layer in layers),
        )
        for name, layers in space.groups.items()
    }


def sensitivity_greedy_candidates(
    space: SearchSpaceLike, layer_sensitivities: Mapping[str, float], layer_params: Mapping[str, int]
) -> list[Candidate]:
    """The greedy bit-lowering path, widest assignment first (see the module docstring)."""
    groups = group_sensitivities(space, layer_sensitivities, layer_params)
    ladders = {name: _quantized_ladder(bits_choices(space, name)) for name in space.groups}
    position = dict.fromkeys(ladders, 0)
    path: list[Candidate] = []

    def emit() -> None:
        candidate = resolve_candidate(space, {name: ladders[name][position[name]] for name in ladders})
        if candidate is not None and candidate not in path:
            path.append(candidate)

    emit()
    while True:
        movable = [name for name in ladders if position[name] + 1 < len(ladders[name])]
        if not movable:
            return path
        step = min(movable, key=_step_cost(groups, ladders, position))
        position[step] += 1
        emit()


def _step_cost(
    groups: Mapping[str, tuple[float, int]], ladders: Mapping[str, list[int]], position: Mapping[str, int]
) -> Callable[[str], float]:
    """Predicted damage per bit saved when lowering a group one step (see the module docstring)."""

    def cost(name: str) -> float:
        sensitivity, params = groups[name]
        current, lower = ladders[name][position[name]], ladders[name][position[name] + 1]
        damage = sensitivity * (_noise(lower) - _noise(current))
        return damage / (params * (current - lower))

    return cost


def _knob_name(parameter: str) -> str:
    """The knob a sampler parameter belongs to (`bits.front@kmeans` -> `bits.front`)."""
    return parameter.split("@", 1)[0]


def _quantized_ladder(choices: Any) -> list[int]:
    """Bit widths widest first, FP32 left out unless it is the only choice."""
    quantized = sorted((bits for bits in choices if bits != FLOAT_BITS), reverse=True)
    return quantized or [FLOAT_BITS]


def _noise(bits: int) -> float:
    """Relative quantization noise power at `bits` (FP32 adds none)."""
    return 0.0 if bits >= FLOAT_BITS else 4.0 ** (-bits)
