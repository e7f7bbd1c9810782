"""Pareto dominance over trial rows: the front, NSGA-II ranks and crowding, hypervolume.

Rows are the flat metric dicts trials report, so everything here can be recomputed from
`trials.csv`. Dominance tests and hypervolume come from `moocore`; only the teacher-relative
normalisation and NSGA-II crowding distance are written here.

A row whose value for any objective is missing or not a finite number is left out of every
computation: a failed or partially reported trial must not enter the front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import moocore
import numpy as np

DIRECTIONS = ("min", "max")
"""Allowed objective directions."""


@dataclass(frozen=True)
class Objective:
    """One metric to optimise and whether lower or higher is better.

    Attributes:
        metric: Key of the metric in a trial row (e.g. "eer", "size_bytes").
        direction: "min" or "max".
    """

    metric: str
    direction: str

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"objective metric must be a non-empty string, got {self.metric!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"objective {self.metric!r}: direction must be 'min' or 'max', got {self.direction!r}"
            )

    @property
    def maximise(self) -> bool:
        """Whether higher values are better."""
        return self.direction == "max"

    @classmethod
    def parse(cls, item: Objective | str | Mapping[str, str] | Sequence[str]) -> Objective:
        """Build an objective from any form a config may use.

        Accepts an `Objective`, the string "eer:min", a mapping {"metric": "eer",
        "direction": "min"} or a pair ["eer", "min"].

        Raises:
            ValueError: If the item has none of these forms or names an unknown direction.
        """
        if isinstance(item, Objective):
            return item
        if isinstance(item, str):
            metric, separator, direction = item.rpartition(":")
            if not separator:
                raise ValueError(f"objective {item!r} must read 'metric:min' or 'metric:max'")
            return cls(metric.strip(), direction.strip())
        if isinstance(item, Mapping):
            if set(item) != {"metric", "direction"}:
                raise ValueError(f"objective {dict(item)!r} must have exactly the keys 'metric' and 'direction'")
            return cls(item["metric"], item["direction"])
        if isinstance(item, Sequence) and len(item) == 2:
            return cls(item[0], item[1])
        raise ValueError(
            f"objective {item!r} must be 'metric:direction', a [metric, direction] pair "
            "or a mapping with 'metric' and 'direction'"
        )


def pareto_front(rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the rows no other row dominates.

    Rows with identical objective vectors do not dominate each other, so all copies of a
    non-dominated vector are kept.

    Returns:
        Ascending indices into `rows`.
    """
    indices, values, maximise = _objective_values(rows, objectives)
    nondominated = moocore.is_nondominated(values, maximise=maximise, keep_weakly=True)
    return indices[nondominated].tolist()


def non_dominated_ranks(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> list[int | None]:
    """NSGA-II non-dominated sorting rank of each row: 0 is the front, 1 the front once 0 is removed.

    Returns:
        One entry per row; None for rows left out for a missing or non-finite objective.
    """
    indices, values, maximise = _objective_values(rows, objectives)
    ranks: list[int | None] = [None] * len(rows)
    for index, rank in zip(indices, moocore.pareto_rank(values, maximise=maximise)):
        ranks[index] = int(rank)
    return ranks


def crowding_distance(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> list[float | None]:
    """NSGA-II crowding distance of each row within its own non-dominated front.

    Per objective, the rows of a front are sorted (ties kept in row order); the two extremes
    get infinity and every other row adds the gap between its neighbours divided by the
    front's range of that objective. Larger means more isolated, hence preferred when
    promoting among rows of equal rank. Fronts of one or two rows are all infinite.

    Returns:
        One entry per row; None for rows left out for a missing or non-finite objective.
    """
    indices, values, maximise = _objective_values(rows, objectives)
    ranks = moocore.pareto_rank(values, maximise=maximise)
    distances: list[float | None] = [None] * len(rows)
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        for member, distance in zip(members, _front_crowding(values[members])):
            distances[indices[member]] = float(distance)
    return distances


def normalized_points(
    rows: Sequence[Mapping[str, float]],
    objectives: Sequence[Objective],
    reference: Mapping[str, float],
) -> np.ndarray:
    """Rows as minimisation coordinates relative to a reference row (the FP32 teacher).

    Each value v of an objective whose reference value is r becomes
    `1 + (v - r) / s` for "min" and `1 - (v - r) / s` for "max", with scale s = |r|.
    For positive r that is `v / r` and `2 - v / r`: the reference sits at 1 in every
    dimension, lower is better everywhere, and the map stays linear (hypervolume ratios keep
    their meaning) and defined for zero or negative values, which `r / v` would not be.
    When r is 0 (e.g. a teacher with EER 0) there is no relative scale, so s = 1 and the
    coordinate is the absolute difference from the reference, offset to 1.

    Returns:
        Array of shape (len(rows), len(objectives)); rows with a missing or non-finite
        objective are all NaN.

    Raises:
        ValueError: If the reference lacks a finite value for an objective.
    """
    parsed = _parsed_objectives(objectives)
    reference_values = np.array([_reference_value(reference, objective) for objective in parsed])
    scales = np.where(reference_values == 0.0, 1.0, np.abs(reference_values))
    signs = np.array([-1.0 if objective.maximise else 1.0 for objective in parsed])
    indices, values, _ = _objective_values(rows, parsed)
    points = np.full((len(rows), len(parsed)), np.nan)
    points[indices] = 1.0 + signs * (values - reference_values) / scales
    return points


def hypervolume(
    rows: Sequence[Mapping[str, float]],
    objectives: Sequence[Objective],
    reference_row: Mapping[str, float],
    ref_point: float = 2.0,
) -> float:
    """Hypervolume of the rows' normalised points (see `normalized_points`).

    The reference point is `ref_point` in every normalised dimension. The teacher sits at 1,
    so the default 2.0 bounds each "min" objective at twice the teacher's value (e.g. double
    its EER or size) and each "max" objective at zero (for a positive teacher value). Only
    points strictly better than the reference point in every dimension add volume; an empty
    set, or one with no valid rows, has hypervolume 0.

    Raises:
        ValueError: If the reference row lacks a finite value for an objective or
            `ref_point` is not finite.
    """
    _check_ref_point(ref_point)
    points = normalized_points(rows, objectives, reference_row)
    return _points_hypervolume(points[_finite_rows(points)], ref_point)


def hypervolume_history(
    rows_in_completion_order: Sequence[Mapping[str, float]],
    objectives: Sequence[Objective],
    reference_row: Mapping[str, float],
    ref_point: float = 2.0,
) -> list[float]:
    """Hypervolume of the first k rows, for every k: the search's progress curve.

    Returns:
        One value per row, non-decreasing (a new row can only add volume).
    """
    _check_ref_point(ref_point)
    points = normalized_points(rows_in_completion_order, objectives, reference_row)
    valid = _finite_rows(points)
    history: list[float] = []
    for count in range(len(points)):
        if history and not valid[count]:
            history.append(history[-1])
            continue
        prefix = points[: count + 1]
        history.append(_points_hypervolume(prefix[valid[: count + 1]], ref_point))
    return history


def _parsed_objectives(objectives: Sequence[Objective]) -> list[Objective]:
    """Objectives as `Objective` instances, checked to be non-empty and distinct."""
    parsed = [Objective.parse(item) for item in objectives]
    if not parsed:
        raise ValueError("at least one objective is required")
    metrics = [objective.metric for objective in parsed]
    duplicates = sorted({metric for metric in metrics if metrics.count(metric) > 1})
    if duplicates:
        raise ValueError(f"objectives name the same metric more than once: {duplicates}")
    return parsed


def _finite_value(row: Mapping[str, float], metric: str) -> float | None:
    """The row's value for `metric` as a float, or None when missing or not a finite number."""
    try:
        value = float(row[metric])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _objective_values(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Indices of the usable rows, their raw objective values, and each objective's maximise flag."""
    parsed = _parsed_objectives(objectives)
    indices: list[int] = []
    values: list[list[float]] = []
    for index, row in enumerate(rows):
        row_values = [_finite_value(row, objective.metric) for objective in parsed]
        if all(value is not None for value in row_values):
            indices.append(index)
            values.append(row_values)
    matrix = np.array(values, dtype=np.float64).reshape(len(values), len(parsed))
    return np.array(indices, dtype=np.int64), matrix, [objective.maximise for objective in parsed]


def _reference_value(reference: Mapping[str, float], objective: Objective) -> float:
    """The reference row's finite value for an objective."""
    value = _finite_value(reference, objective.metric)
    if value is None:
        raise ValueError(
            f"reference row has no finite value for objective {objective.metric!r}: "
            f"{reference.get(objective.metric)!r}"
        )
    return value


def _front_crowding(values: np.ndarray) -> np.ndarray:
    """Crowding distance of each point of one mutually non-dominated set."""
    count = values.shape[0]
    if count <= 2:
        return np.full(count, np.inf)
    distance = np.zeros(count)
    for column in values.T:
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        distance[order[0]] = distance[order[-1]] = np.inf
        span = ordered[-1] - ordered[0]
        if span > 0.0:
            distance[order[1:-1]] += (ordered[2:] - ordered[:-2]) / span
    return distance


def _check_ref_point(ref_point: float) -> None:
    """Reject a reference point that would make every hypervolume meaningless."""
    if not math.isfinite(ref_point):
        raise ValueError(f"ref_point must be a finite number, got {ref_point!r}")


def _finite_rows(points: np.ndarray) -> np.ndarray:
    """Mask of the normalised points that came from usable rows."""
    return np.all(np.isfinite(points), axis=1)


def _points_hypervolume(points: np.ndarray, ref_point: float) -> float:
    """Hypervolume of finite minimisation points against `ref_point` in every dimension."""
    if points.shape[0] == 0:
        return 0.0
    return float(moocore.hypervolume(points, ref=np.full(points.shape[1], ref_point)))
