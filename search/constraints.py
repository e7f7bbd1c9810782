"""Constraints of a run (`constraints:` in the config), and whether a trial's metrics meet them.

A constraint reads `METRIC <= BOUND` or `METRIC >= BOUND` (e.g. `size_bytes <= 500000`,
`latency_ms@cortex-a53 <= 50`). Each one gives a violation per trial, Optuna's convention: zero
or less is satisfied, positive is by how much it is missed. The engine marks every trial's
feasibility from these violations itself, because Optuna's random and grid samplers ignore
constraints; infeasible trials never enter the front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<=", ">=")
_PATTERN = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w@.\-]*)\s*(?P<op><=|>=|==|!=|<|>|=)\s*(?P<bound>\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`, with `op` one of `<=`, `>=`."""

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"constraint {self.metric!r}: operator {self.op!r}; expected one of {list(OPERATORS)}")
        if not math.isfinite(self.bound):
            raise ValueError(f"constraint {self.metric!r}: bound {self.bound!r} is not a finite number")

    def __str__(self) -> str:
        bound = str(int(self.bound)) if self.bound.is_integer() else repr(self.bound)
        return f"{self.metric} {self.op} {bound}"

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """How far the metrics miss the bound (<= 0: satisfied); infinite when the metric is absent."""
        value = _finite(metrics.get(self.metric))
        if value is None:
            return math.inf
        return value - self.bound if self.op == "<=" else self.bound - value


def parse_constraint(text: str, known_metrics: Sequence[str]) -> Constraint:
    """Parse `METRIC <= BOUND` / `METRIC >= BOUND`; the metric must be one trials report.

    Raises:
        ValueError: Naming the expression and what is wrong with it.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r}: expected a string such as 'size_bytes <= 500000'")
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(f"{text!r}: expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER'")
    metric, op = match["metric"], match["op"]
    if op not in OPERATORS:
        raise ValueError(f"{text!r}: operator {op!r} not supported; use one of {list(OPERATORS)}")
    if metric not in known_metrics:
        raise ValueError(f"{text!r}: unknown metric {metric!r}; known: {list(known_metrics)}")
    try:
        bound = float(match["bound"].replace("_", ""))
    except ValueError:
        raise ValueError(f"{text!r}: bound {match['bound']!r} is not a number") from None
    if not math.isfinite(bound):
        raise ValueError(f"{text!r}: bound {match['bound']!r} is not a finite number")
    return Constraint(metric, op, bound)


def parse_constraints(items: Iterable[Any], known_metrics: Sequence[str]) -> tuple[Constraint, ...]:
    """Parse a config's `constraints:` list; errors name the item as `constraints[i]`."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"constraints: must be a list of expressions, got {items!r}")
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse_constraint(item, known_metrics))
        except ValueError as error:
            raise ValueError(f"constraints[{index}]: {error}") from None
    return tuple(parsed)


def violations(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> dict[str, float]:
    """Each constraint's violation, keyed by its expression (Optuna's `set_constraint` keys)."""
    return {str(constraint): constraint.violation(metrics) for constraint in constraints}


def is_feasible(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> bool:
    """Whether every constraint is met (no constraints: always)."""
    return all(value <= 0.0 for value in violations(constraints, metrics).values())


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
