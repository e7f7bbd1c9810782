"""How far each trial is from the recorded Pareto front, for filtering and sorting in the reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.front import front_eligible
from search.pareto import Objective, non_dominated_ranks
from search.run_dir import RunDirectory

FRONT_RANK = 1
"""Rank of the front's members; the members once the front is removed rank 2, and so on."""


def front_ranks(
    rows: Sequence[Mapping[str, Any]],
    members: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    stopped_in_front: bool = False,
) -> list[int | None]:
    """Each row's rank: 1 for a member of the front, then 2, 3, ... by non-dominated sorting of
    the other rows that may enter the front; None for the rows that may not (failed, infeasible).

    The members are taken from pareto.json rather than recomputed, so rank 1 is exactly the
    recorded front whatever rule of dominance chose it.
    """
    on_front = {member["trial"] for member in members}
    others = [
        index for index, row in enumerate(rows)
        if row.get("trial") not in on_front and front_eligible(row, stopped_in_front)
    ]
    ranks: list[int | None] = [FRONT_RANK if row.get("trial") in on_front else None for row in rows]
    for index, rank in zip(others, non_dominated_ranks([rows[index] for index in others], objectives)):
        if rank is not None:
            ranks[index] = FRONT_RANK + 1 + rank
    return ranks


def recorded_front_ranks(
    run_dir: RunDirectory,
    rows: Sequence[Mapping[str, Any]],
    members: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
) -> list[int | None]:
    """`front_ranks` under the run's own `search.stopped_in_front`, as its front was built."""
    stopped_in_front = bool(run_dir.read_config().get("search", {}).get("stopped_in_front", False))
    return front_ranks(rows, members, objectives, stopped_in_front)
