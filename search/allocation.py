"""Bit allocation by integer linear programming (HAWQ-V3), over the knobs a space offers.

HAWQ-V3 picks each layer's bit width by minimising the summed sensitivity x perturbation
(`evaluators.sensitivity_estimators`) under a size and a latency budget. Here the variables are
the space's own knob choices, not layers, so every solution is a candidate the space can express:

- one binary variable per choice of every bits knob and every quantizer knob, with a one-hot
  constraint per knob;
- the damage, size and latency of a bits knob's layers depend on its width *and* on the
  quantizer their quantizer knob chose, a product of two choices. It is linearised exactly with
  one "cell" variable per (bits knob, quantizer knob, quantizer, bits) combination whose cells
  sum to the bits choice over quantizers and to the quantizer choice over widths (a 0/1 matrix
  with one-hot row and column sums has its single 1 where the two choices meet). A combination
  the quantizer does not allow has no cell, so the solver cannot pick both choices together.
  Layers whose quantizer no knob sets take the space's default quantizer: their cells are the
  bits choices themselves.

Costs per cell are additive over layers: the packed file's entries follow one another (header,
side data and each layer's own bytes, `evaluators.layer_quantization`), and the cost model's
latency is a sum over layers (`hwcost.estimator`). Everything the ILP does not choose (layers no
bits knob covers, norm terms, the header, value knobs at their defaults) is the constant `base`.

`predicted_front` solves the ILP over a geometric two-dimensional grid of size and latency
budgets: its solutions are the front the damage model predicts, before any trial runs.
`least_damage_within_sizes` solves it at given sizes alone: the predicted best mixed assignment no
larger than each (a warm start puts one under every uniform model).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from evaluators.layer_quantization import QuantChoice

Assignment = dict[str, Any]
"""Bits knob and quantizer knob name -> its value (knob names, without `@` variants)."""

_TIE_BREAK = 1e-7
"""Weight of normalised size + latency in the objective: among equal damage, the smaller solution."""


@dataclass(frozen=True)
class Cost:
    """Predicted damage (summed sensitivity x perturbation), packed bytes and latency of some choices."""

    damage: float = 0.0
    size_bytes: float = 0.0
    latency_ms: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.damage + other.damage, self.size_bytes + other.size_bytes, self.latency_ms + other.latency_ms)


@dataclass(frozen=True)
class Cell:
    """One combination of a bits choice and a quantizer: the layers of `bits_knob` whose quantizer
    `quantizer_knob` sets (None: the space's default quantizer), stored at `choice`."""

    bits_knob: str
    quantizer_knob: str | None
    choice: QuantChoice
    cost: Cost


@dataclass(frozen=True)
class AllocationProblem:
    """The ILP's data: the knobs it chooses, the cells that price their combinations, the constant rest.

    Attributes:
        bits_knobs: Bits knob -> its widths (32 = FP32).
        quantizer_knobs: Quantizer knob -> its quantizers.
        defaults: Each knob's default (what a candidate without that knob gets).
        cells: Every allowed combination with its cost, added to `base` when chosen.
        base: Cost of everything the knobs do not change.
    """

    bits_knobs: dict[str, tuple[int, ...]]
    quantizer_knobs: dict[str, tuple[str, ...]]
    defaults: dict[str, Any]
    cells: tuple[Cell, ...]
    base: Cost = field(default_factory=Cost)

    @property
    def knobs(self) -> dict[str, tuple[Any, ...]]:
        """Every knob the ILP chooses -> its values (one binary variable each)."""
        return {**self.bits_knobs, **self.quantizer_knobs}

    def assignment(self, candidate: Mapping[str, Any]) -> Assignment:
        """The ILP knobs' values in a candidate (`bits.x@kmeans` counts as `bits.x`; missing ones at their default)."""
        values = {parameter.split("@", 1)[0]: value for parameter, value in candidate.items()}
        return {knob: values.get(knob, self.defaults[knob]) for knob in self.knobs}

    def limited_to(self, widths: Mapping[str, Collection[int]]) -> AllocationProblem:
        """The same problem with each bits knob named in `widths` offered only those of its widths.

        Its other choices and their cells are dropped, so every solution keeps the knob within them;
        knobs not named keep every width. A quantizer left with no width on some knob cannot be chosen.
        """
        bits_knobs = {
            knob: tuple(bits for bits in values if knob not in widths or bits in widths[knob])
            for knob, values in self.bits_knobs.items()
        }
        cells = tuple(cell for cell in self.cells if cell.choice.bits in bits_knobs[cell.bits_knob])
        return AllocationProblem(bits_knobs, self.quantizer_knobs, self.defaults, cells, self.base)

    def cost(self, assignment: Mapping[str, Any]) -> Cost:
        """The predicted cost of an assignment (every knob given, or at its default).

        Raises:
            ValueError: A width the chosen quantizer does not allow.
        """
        total = self.base
        for (bits_knob, quantizer_knob), cells in self._cells_by_unit().items():
            bits = assignment.get(bits_knob, self.defaults[bits_knob])
            quantizer = assignment.get(quantizer_knob, self.defaults[quantizer_knob]) if quantizer_knob else None
            chosen = [cell for cell in cells if cell.choice.bits == bits and quantizer in (None, cell.choice.quantizer)]
            if not chosen:
                raise ValueError(f"{bits_knob}={bits} with {quantizer_knob}={quantizer}: not an allowed combination")
            total = total + chosen[0].cost
        return total

    def _cells_by_unit(self) -> dict[tuple[str, str | None], list[Cell]]:
        units: dict[tuple[str, str | None], list[Cell]] = {}
        for cell in self.cells:
            units.setdefault((cell.bits_knob, cell.quantizer_knob), []).append(cell)
        return units


@dataclass(frozen=True)
class Budget:
    """Upper bounds on the predicted size (bytes) and latency (ms); None leaves one free."""

    size_bytes: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class Allocation:
    """One ILP solution: the knob values, their predicted cost and the budget that gave them."""

    assignment: Assignment
    cost: Cost
    budget: Budget


class _Variables:
    """Column indices: knob choices first, then cells."""

    def __init__(self, problem: AllocationProblem) -> None:
        self.choices = [(knob, value) for knob, values in problem.knobs.items() for value in values]
        self.index = {choice: column for column, choice in enumerate(self.choices)}
        self.cells = list(problem.cells)
        self.count = len(self.choices) + len(self.cells)

    def cell(self, position: int) -> int:
        return len(self.choices) + position


def solve(
    problem: AllocationProblem, budget: Budget = Budget(), minimise: str = "damage", largest: bool = False
) -> Allocation | None:
    """The assignment minimising `minimise` ("damage", "size_bytes" or "latency_ms") within `budget`
    (maximising it when `largest`).

    Ties are broken towards smaller size and latency. Returns None when no assignment fits.
    """
    variables = _Variables(problem)
    rows, lower, upper = _structure(problem, variables)
    scales = _scales(problem)
    budgets = (("size_bytes", budget.size_bytes), ("latency_ms", budget.latency_ms))
    for metric, limit in budgets:
        if limit is not None:
            row = np.zeros(variables.count)
            for position, cell in enumerate(variables.cells):
                row[variables.cell(position)] = getattr(cell.cost, metric) / scales[metric]
            rows.append(row)
            lower.append(-np.inf)
            upper.append((limit - getattr(problem.base, metric)) / scales[metric])
    objective = np.zeros(variables.count)
    for position, cell in enumerate(variables.cells):
        tie = _TIE_BREAK * sum(getattr(cell.cost, metric) / scales[metric] for metric in ("size_bytes", "latency_ms"))
        objective[variables.cell(position)] = (-1 if largest else 1) * getattr(cell.cost, minimise) / scales[minimise] + tie
    matrix = np.vstack(rows) if rows else np.zeros((0, variables.count))
    result = milp(
        objective,
        integrality=np.ones(variables.count),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(matrix, lower, upper),
        options={"mip_rel_gap": 1e-9},
    )
    if result.x is None:
        return None
    chosen = [choice for choice, value in zip(variables.choices, result.x) if value > 0.5]
    assignment = {knob: value for knob, value in chosen}
    return Allocation(assignment, problem.cost(assignment), budget)


def predicted_front(problem: AllocationProblem, size_points: int = 8, latency_points: int = 4) -> list[Allocation]:
    """ILP solutions over a geometric grid of size x latency budgets, distinct, largest predicted size first.

    Each axis runs from the smallest value any assignment reaches to the largest (where the budget
    no longer binds); the latency axis is not the size axis again, since fewer bits can run slower
    (unpacking). Steps are geometric, because sizes from 2 to 32 bits span 16x and a linear grid
    would leave one point below 8 bits.
    """
    axes = []
    for metric, points in (("size_bytes", size_points), ("latency_ms", latency_points)):
        smallest, largest = solve(problem, minimise=metric), solve(problem, minimise=metric, largest=True)
        if smallest is None or largest is None:
            raise ValueError("the allocation problem has no feasible assignment")
        axes.append(_geometric(getattr(smallest.cost, metric), getattr(largest.cost, metric), points))
    return _least_damage(problem, [Budget(size, latency) for size in axes[0] for latency in axes[1]])


def least_damage_within_sizes(problem: AllocationProblem, sizes: Iterable[float]) -> list[Allocation]:
    """The least-damage assignment no larger than each of `sizes` (latency left free): distinct,
    largest predicted size first; a size nothing fits gives none."""
    return _least_damage(problem, [Budget(size_bytes=size) for size in sizes])


def _least_damage(problem: AllocationProblem, budgets: Iterable[Budget]) -> list[Allocation]:
    """The ILP's solution within each budget, distinct, largest predicted size first."""
    found: dict[tuple, Allocation] = {}
    for budget in budgets:
        allocation = solve(problem, budget)
        if allocation is not None:
            found.setdefault(tuple(sorted(allocation.assignment.items())), allocation)
    return sorted(found.values(), key=lambda allocation: -allocation.cost.size_bytes)


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """`count` items evenly spaced along `items` (both ends included), or all of them when fewer."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    positions = sorted({round(index * (len(items) - 1) / (count - 1)) for index in range(count)})
    return [items[position] for position in positions]


def _structure(problem: AllocationProblem, variables: _Variables) -> tuple[list[np.ndarray], list[float], list[float]]:
    """One-hot rows per knob and the rows tying cells to the choices they combine (all equalities)."""
    rows: list[np.ndarray] = []
    bounds: list[float] = []

    def equality(columns: Iterable[int], minus: int | None = None, total: float = 0.0) -> None:
        row = np.zeros(variables.count)
        row[list(columns)] = 1.0
        if minus is not None:
            row[minus] = -1.0
        rows.append(row)
        bounds.append(total)

    for knob, values in problem.knobs.items():
        equality((variables.index[(knob, value)] for value in values), total=1.0)
    units: dict[tuple[str, str | None], list[int]] = {}
    for position, cell in enumerate(variables.cells):
        units.setdefault((cell.bits_knob, cell.quantizer_knob), []).append(position)
    for (bits_knob, quantizer_knob), positions in units.items():
        for bits in problem.bits_knobs[bits_knob]:
            cells = [variables.cell(p) for p in positions if variables.cells[p].choice.bits == bits]
            equality(cells, minus=variables.index[(bits_knob, bits)])
        if quantizer_knob is not None:
            for quantizer in problem.quantizer_knobs[quantizer_knob]:
                cells = [variables.cell(p) for p in positions if variables.cells[p].choice.quantizer == quantizer]
                equality(cells, minus=variables.index[(quantizer_knob, quantizer)])
    return rows, list(bounds), list(bounds)


def _scales(problem: AllocationProblem) -> dict[str, float]:
    """A typical magnitude per metric, so every constraint row and objective is of order one."""
    scales = {}
    for metric in ("damage", "size_bytes", "latency_ms"):
        largest = max((abs(getattr(cell.cost, metric)) for cell in problem.cells), default=0.0)
        scales[metric] = largest if largest > 0 else 1.0
    return scales


def _geometric(low: float, high: float, points: int) -> list[float]:
    """`points` budgets from `low` to `high`, equally spaced in ratio (linearly when not both positive)."""
    if points <= 1 or high <= low:
        return [high]
    if low > 0:
        return [low * (high / low) ** (index / (points - 1)) for index in range(points)]
    return [low + (high - low) * index / (points - 1) for index in range(points)]


__all__ = [
    "Allocation",
    "AllocationProblem",
    "Assignment",
    "Budget",
    "Cell",
    "Cost",
    "least_damage_within_sizes",
    "predicted_front",
    "solve",
    "spread",
]
