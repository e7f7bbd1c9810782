"""Which finished trials may enter the Pareto front, and the front and hypervolume over them.

A trial row may enter the front when it completed the whole fidelity ladder and meets the run's
constraints. Trials the multi-fidelity scheduler stopped at a lower rung carry metrics of a
cheaper evaluation; they stay out unless the run asks otherwise (`search.stopped_in_front`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.pareto import Objective, hypervolume_history, pareto_front
from search.run_dir import RunDirectory
from search.trial_rows import COMPLETE, STOPPED


def front_eligible(row: Mapping[str, Any], stopped_in_front: bool = False) -> bool:
    """Whether a row may enter the front: finished (or stopped, when allowed) and feasible."""
    allowed = (COMPLETE, STOPPED) if stopped_in_front else (COMPLETE,)
    return row.get("status") in allowed and row.get("feasible", True) is not False


def front_members(
    rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective], stopped_in_front: bool = False
) -> list[dict[str, Any]]:
    """The eligible rows on the Pareto front (`search.pareto.pareto_front`: differences below an
    objective's resolution ignored), in row order."""
    eligible = [dict(row) for row in rows if front_eligible(row, stopped_in_front)]
    return [eligible[index] for index in pareto_front(eligible, objectives)]


def front_hypervolume_history(
    rows: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    stopped_in_front: bool = False,
) -> list[float]:
    """Hypervolume of the front after each finished trial; ineligible rows add nothing."""
    masked = [row if front_eligible(row, stopped_in_front) else {} for row in rows]
    return hypervolume_history(masked, objectives, reference)


def write_front_files(
    run_dir: RunDirectory,
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    stopped_in_front: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rewrite pareto.json and hypervolume.csv from trials.jsonl; returns (rows, front).

    pareto.json states each objective's resolution, so a report reads the rule that chose the front.
    """
    rows = run_dir.read_trials()
    front = front_members(rows, objectives, stopped_in_front)
    run_dir.write_pareto([objective.to_config() for objective in objectives], reference, front)
    run_dir.write_hypervolume(front_hypervolume_history(rows, objectives, reference, stopped_in_front))
    return rows, front
