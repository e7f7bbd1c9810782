"""Which trial to export: a small selection language over a run's metrics.

Grammar (keywords are lower case; metric names as in trials.jsonl)::

    selection  := goal [ "where" condition { "and" condition } ]
    goal       := "knee" | "min" METRIC | "max" METRIC
    condition  := METRIC ( "<=" | "<" | ">=" | ">" | "==" | "!=" ) NUMBER

e.g. `knee`, `min eer where size_bytes <= 500000`, `max compression_ratio where eer < 0.08 and
latency_ms@cortex-a53 <= 10`. Numbers may use `_` separators and exponents (`5e5`).

Only completed trials are candidates, and a trial must satisfy every condition. `min`/`max` take
the best value of the metric; ties go to the better values of the run's objectives in order, then
the lower trial number. `knee` takes the Pareto front of the candidates over the run's objectives
(`search.pareto.pareto_front`, which ignores differences below each objective's resolution),
measures each member's distance from the front's best value per objective, less the objective's
resolution (a member within resolution of the best counts as the best), divides it by the front's
range of that objective (an objective constant on the front contributes 0) and picks the member
with the smallest Euclidean distance to the ideal point (0, ..., 0): the most balanced trade-off,
independent of units. Subtracting the resolution keeps a spread the objective cannot resolve from
being stretched to weigh as much as a real one, and, unlike dropping such an objective outright,
lets its weight grow smoothly as its spread grows past the resolution.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from search.pareto import Objective, minimisation_values, pareto_front

KNEE = "knee"
_GOALS = ("knee", "min", "max")
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?)(?![\w@.-])"
    r"|(?P<comparison><=|>=|==|!=|<|>)|(?P<word>[A-Za-z_][\w.@-]*))"
)
_COMPLETE = "complete"


class SelectionError(ValueError):
    """A selection that cannot be parsed or that no trial satisfies; the message quotes it."""


@dataclass(frozen=True)
class Condition:
    """`metric <comparison> value`, e.g. `size_bytes <= 500000`."""

    metric: str
    comparison: str
    value: float

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether the row has a finite value for the metric that satisfies the comparison."""
        value = _finite(row.get(self.metric))
        return value is not None and _COMPARISONS[self.comparison](value, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.comparison} {self.value:g}"


@dataclass(frozen=True)
class Selection:
    """A parsed selection: a goal ("knee", "min", "max"), its metric, and the conditions."""

    text: str
    goal: str
    metric: str | None
    conditions: tuple[Condition, ...]

    @classmethod
    def parse(cls, text: str, metrics: Sequence[str]) -> Selection:
        """Parse `text`; metrics it names must be among `metrics` (the run's metric names).

        Raises:
            SelectionError: Bad syntax or an unknown metric, quoting the selection.
        """
        return _Parser(text, metrics).parse()

    def choose(self, rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> Mapping[str, Any]:
        """The selected row among the completed rows that satisfy every condition.

        Raises:
            SelectionError: No completed trial satisfies the conditions.
        """
        candidates = [row for row in rows if row.get("status") == _COMPLETE and all(c.holds(row) for c in self.conditions)]
        if self.metric is not None:
            candidates = [row for row in candidates if _finite(row.get(self.metric)) is not None]
        if not candidates:
            where = f" satisfies {' and '.join(map(str, self.conditions))}" if self.conditions else " has the metrics"
            raise SelectionError(f"selection {self.text!r}: no completed trial{where}{_closest_hint(rows, self.conditions)}")
        if self.goal == KNEE:
            return candidates[knee_index(candidates, objectives)]
        sign = 1.0 if self.goal == "min" else -1.0
        return min(candidates, key=lambda row: (sign * float(row[self.metric]), *_objective_key(row, objectives), row["trial"]))


def knee_index(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> int:
    """Index of the knee of the rows' Pareto front (see the module docstring).

    Raises:
        SelectionError: No row has finite values for every objective.
    """
    front = pareto_front(rows, objectives)
    if not front:
        raise SelectionError(f"no trial has finite values for the objectives {[o.metric for o in objectives]}")
    _, values = minimisation_values([rows[index] for index in front], objectives)
    ideal = values.min(axis=0)
    span = values.max(axis=0) - ideal
    resolution = np.array([objective.resolution.tolerance(value) for objective, value in zip(objectives, ideal)])
    excess = np.maximum(values - ideal - resolution, 0.0)
    scaled = np.divide(excess, span, out=np.zeros_like(values), where=span > 0)
    distances = np.linalg.norm(scaled, axis=1)
    best = min(range(len(front)), key=lambda position: (distances[position], rows[front[position]]["trial"]))
    return front[best]


def _objective_key(row: Mapping[str, Any], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The row's objective values as minimisation values (maximised ones negated; missing ones last)."""
    values = [_finite(row.get(objective.metric)) for objective in objectives]
    return tuple(
        math.inf if value is None else (-value if objective.maximise else value)
        for objective, value in zip(objectives, values)
    )


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _closest_hint(rows: Sequence[Mapping[str, Any]], conditions: Sequence[Condition]) -> str:
    """For a single failing condition, the best value any completed trial reaches."""
    if len(conditions) != 1:
        return ""
    condition = conditions[0]
    values = [_finite(row.get(condition.metric)) for row in rows if row.get("status") == _COMPLETE]
    values = [value for value in values if value is not None]
    if not values:
        return ""
    closest = min(values) if condition.comparison in ("<=", "<") else max(values)
    return f" (closest: {condition.metric} = {closest:g})"


class _Parser:
    """Recursive-descent parser over the tokens of one selection."""

    def __init__(self, text: str, metrics: Sequence[str]) -> None:
        self.text = text
        self.metrics = list(metrics)
        self.tokens = self._tokenize(text)
        self.position = 0

    def parse(self) -> Selection:
        goal = self._word("a goal: 'knee', 'min METRIC' or 'max METRIC'")
        if goal not in _GOALS:
            self._fail(f"expected 'knee', 'min' or 'max' at the start, got {goal!r}")
        metric = None if goal == KNEE else self._metric()
        conditions = []
        if self._peek() is not None:
            if self._word("'where' or the end") != "where":
                self._fail(f"expected 'where' after {goal + (' ' + metric if metric else '')!r}, got {self._previous()!r}")
            conditions.append(self._condition())
            while self._peek() is not None:
                if self._word("'and' or the end") != "and":
                    self._fail(f"expected 'and' between conditions, got {self._previous()!r}")
                conditions.append(self._condition())
        return Selection(self.text, goal, metric, tuple(conditions))

    def _condition(self) -> Condition:
        metric = self._metric()
        kind, comparison = self._next(f"a comparison ({', '.join(_COMPARISONS)}) after {metric!r}")
        if kind != "comparison":
            self._fail(f"expected a comparison ({', '.join(_COMPARISONS)}) after {metric!r}, got {comparison!r}")
        kind, number = self._next(f"a number after '{metric} {comparison}'")
        if kind != "number":
            self._fail(f"expected a number after '{metric} {comparison}', got {number!r}")
        return Condition(metric, comparison, float(number.replace("_", "")))

    def _metric(self) -> str:
        name = self._word("a metric name")
        if name not in self.metrics:
            self._fail(f"unknown metric {name!r}; known: {', '.join(self.metrics)}")
        return name

    def _word(self, expected: str) -> str:
        kind, value = self._next(expected)
        if kind != "word":
            self._fail(f"expected {expected}, got {value!r}")
        return value

    def _next(self, expected: str) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            self._fail(f"expected {expected}, got the end")
        self.position += 1
        return token

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _previous(self) -> str:
        return self.tokens[self.position - 1][1]

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, position = [], 0
        while text[position:].strip():
            match = _TOKEN.match(text, position)
            if not match:
                self._fail(f"unexpected {text[position:].strip()[0]!r} at character {len(text) - len(text[position:].lstrip()) + 1}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            position = match.end()
        return tokens

    def _fail(self, reason: str) -> NoReturn:
        raise SelectionError(f"selection {self.text!r}: {reason}")


__all__ = ["KNEE", "Condition", "Selection", "SelectionError", "knee_index"]
