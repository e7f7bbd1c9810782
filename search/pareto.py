"""Pareto dominance over trial rows: the front, NSGA-II ranks and crowding, hypervolume.

Rows are the flat metric dicts trials report, so everything here can be recomputed from
`trials.csv`. Dominance tests and hypervolume come from `moocore`; only the teacher-relative
normalisation, NSGA-II crowding distance and the front's tolerance to differences below each
objective's resolution (`search.resolution`) are written here.

A row whose value for any objective is missing or not a finite number is left out of every
computation: a failed or partially reported trial must not enter the front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import moocore
import numpy as np

from search.resolution import Resolution, beats, default_resolution

DIRECTIONS = ("min", "max")
"""Allowed objective directions."""


@dataclass(frozen=True)
class Objective:
    """One metric to optimise, whether lower or higher is better, and the difference it can resolve.

    Attributes:
        metric: Key of the metric in a trial row (e.g. "eer", "size_bytes").
        direction: "min" or "max".
        resolution: Differences up to this are ties for the front and the knee. Given as a
            `Resolution` or a config value (`Resolution.parse`: a number or "N%"); None takes the
            metric's default (`search.resolution.default_resolution`), so an objective always has one.
    """

    metric: str
    direction: str
    resolution: Resolution | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"objective metric must be a non-empty string, got {self.metric!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"objective {self.metric!r}: direction must be 'min' or 'max', got {self.direction!r}"
            )
        try:
            resolution = default_resolution(self.metric) if self.resolution is None else Resolution.parse(self.resolution)
        except ValueError as error:
            raise ValueError(f"objective {self.metric!r}: {error}") from None
        object.__setattr__(self, "resolution", resolution)

    @property
    def maximise(self) -> bool:
        """Whether higher values are better."""
        return self.direction == "max"

    def to_config(self) -> dict[str, Any]:
        """The mapping form `parse` reads back, resolution included, so a run's files state it."""
        return {"metric": self.metric, "direction": self.direction, "resolution": self.resolution.to_config()}

    @classmethod
    def parse(cls, item: Objective | str | Mapping[str, Any] | Sequence[Any]) -> Objective:
        """Build an objective from any form a config may use.

        Accepts an `Objective`, the string "eer:min", a mapping {"metric": "eer", "direction":
        "min"} with an optional "resolution", or a list [metric, direction] with an optional third
        item, the resolution. A resolution is a number in the metric's unit or a percentage
        ("10%") of the better value; without one the metric's default applies.

        Raises:
            ValueError: If the item has none of these forms, names an unknown direction or an
                invalid resolution.
        """
        if isinstance(item, Objective):
            return item
        if isinstance(item, str):
            metric, separator, direction = item.rpartition(":")
            if not separator:
                raise ValueError(f"objective {item!r} must read 'metric:min' or 'metric:max'")
            return cls(metric.strip(), direction.strip())
        if isinstance(item, Mapping):
            if not {"metric", "direction"} <= set(item) <= {"metric", "direction", "resolution"}:
                raise ValueError(
                    f"objective {dict(item)!r} must have the keys 'metric' and 'direction', and may have 'resolution'"
                )
            return cls(item["metric"], item["direction"], item.get("resolution"))
        if isinstance(item, Sequence) and len(item) in (2, 3):
            return cls(*item)
        raise ValueError(
            f"objective {item!r} must be 'metric:direction', a [metric, direction(, resolution)] list "
            "or a mapping with 'metric', 'direction' and optionally 'resolution'"
        )


def pareto_front(rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the rows on the front, differences below each objective's resolution ignored.

    The front is taken from the exactly non-dominated rows, so the resolution only ever removes
    rows, never adds one: a row that another row dominates stays off even when every difference
    is below the resolution (it is then a near-copy of a member). Among those rows, one is removed
    when a kept row beats it by more than the resolution on some objective while being worse by
    no more than the resolution on every other (`search.resolution.beats`). Beating within the
    resolution is not transitive, so removal needs a beater that stays: rows nothing beats are
    kept, the rows they beat removed, and so on. Rows left undecided are beaten only by other
    undecided rows, which happens when near-ties beat one another in a cycle (possible with
    three or more objectives); they are all kept, since none of their beaters stays. With every
    resolution exact this is the plain Pareto front. Rows with identical objective vectors do
    not beat each other, so all copies of a kept vector are kept.

    Returns:
        Ascending indices into `rows`.
    """
    parsed = _parsed_objectives(objectives)
    indices, values = minimisation_values(rows, parsed)
    nondominated = moocore.is_nondominated(values, keep_weakly=True)
    members, member_values = indices[nondominated], values[nondominated]
    kept = _kept_against(beats(member_values, [objective.resolution for objective in parsed]))
    return members[kept].tolist()


def minimisation_values(
    rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the usable rows and their objective values oriented so that lower is better
    everywhere (maximised objectives negated), shape (usable rows, objectives)."""
    indices, values, maximise = _objective_values(rows, objectives)
    return indices, np.where(maximise, -values, values)


def non_dominated_ranks(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> list[int | None]:
    """NSGA-II non-dominated sorting rank of each row: 0 is the front, 1 the front once 0 is removed.

    Exact dominance, without the objectives' resolutions: ranks only order trials for the
    scheduler's promotions (with crowding, which already spreads near-equal trials apart), while
    the resolution governs which trials a run reports as its outcome (`pareto_front`).

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

    Exact values, without the objectives' resolutions: the volume changes continuously with the
    values, so a difference below the resolution moves it by a correspondingly small amount and
    decides nothing, unlike a dominance test. Dropping the rows the resolution removes from the
    front would instead let a new trial take away an old trial's volume, and the history
    (`hypervolume_history`) could fall.

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


def _kept_against(beaten_by: np.ndarray) -> np.ndarray:
    """Rows kept when a row is removed only by a kept row that beats it (see `pareto_front`).

    Args:
        beaten_by: [a, b] is whether row a beats row b.

    Returns:
        Mask of the kept rows: the ones nothing alive beats, in rounds, plus those left undecided.
    """
    count = beaten_by.shape[0]
    kept, removed = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    while True:
        unbeaten = ~kept & ~removed & ~beaten_by[~removed].any(axis=0)
        if not unbeaten.any():
            return ~removed
        kept |= unbeaten
        removed |= beaten_by[kept].any(axis=0)


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
