"""Why each member of a Pareto front is on it, in words a report can print.

A member is on the front because no other member beats it (`search.resolution.beats`): every
other member is clearly worse on some objective, or no objective tells the two apart. Any one
objective then explains it: the member is clearly better on that objective than every member no
worse on the others. A reason states that for one objective, chosen to say the most: one where
the member is clearly the best of the whole front if there is one, else the one that rules out
the most members. "Clearly" and "no worse" are up to each objective's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search.pareto import Objective, minimisation_values
from search.resolution import clearly_better


def front_reasons(members: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> list[str]:
    """One reason per member, e.g. "lowest eer" or "lower eer than trials 1, 2, the members no
    worse on size_bytes and latency_ms"; "" for a member without a finite value for every objective.

    Args:
        members: The front's rows (pareto.json's members), compared only with one another.
        objectives: The run's objectives, whose resolutions decide what "clearly" means.
    """
    objectives = [Objective.parse(objective) for objective in objectives]
    indices, values = minimisation_values(members, objectives)
    better = clearly_better(values, [objective.resolution for objective in objectives])
    trials = [members[index].get("trial") for index in indices]
    reasons = [""] * len(members)
    for position, index in enumerate(indices):
        twins = _twins(position, better)
        reason = _reason(position, better, twins, objectives, trials)
        suffix = f"; no objective tells it apart from trial {_listed([trials[t] for t in twins])}" if twins else ""
        reasons[index] = reason + suffix
    return reasons


def _reason(
    member: int, better: np.ndarray, twins: Sequence[int], objectives: Sequence[Objective], trials: Sequence[Any]
) -> str:
    """The reason for one member, `better[a, b, i]` saying whether a is clearly better than b on i."""
    beats_member = better[:, member, :]
    beaten_by_member = better[member, :, :]
    beaters = np.flatnonzero(beats_member.any(axis=1) & ~beaten_by_member.any(axis=1))
    if beaters.size:
        plural = len(beaters) > 1
        return (
            f"kept although trial{'s' if plural else ''} {_listed([trials[b] for b in beaters])} "
            f"beat{'' if plural else 's'} it: every member beating it is itself beaten, in a cycle of "
            "near-ties, so none of them is removed"
        )
    others = np.ones(len(trials), dtype=bool)
    others[[member, *twins]] = False
    clearly_best = [o for o, column in zip(objectives, beaten_by_member.T) if column[others].all()]
    if clearly_best:
        return _listed([_best(objective) for objective in clearly_best], " and ")
    rivals = [
        np.flatnonzero(others & ~np.delete(beaten_by_member, index, axis=1).any(axis=1))
        for index in range(len(objectives))
    ]
    index = max(range(len(objectives)), key=lambda position: (len(rivals[position]), -position))
    if not len(rivals[index]):
        return "every other member is clearly worse on at least two objectives"
    rest = _listed([objective.metric for position, objective in enumerate(objectives) if position != index], " and ")
    plural = "s" if len(rivals[index]) > 1 else ""
    return (
        f"{_better(objectives[index])} than trial{plural} {_listed([trials[r] for r in rivals[index]])}, "
        f"the member{plural} no worse on {rest}"
    )


def _twins(member: int, better: np.ndarray) -> list[int]:
    """Other members that no objective tells apart from this one."""
    differs = better[member].any(axis=1) | better[:, member].any(axis=1)
    return [other for other in np.flatnonzero(~differs).tolist() if other != member]


def _best(objective: Objective) -> str:
    return f"{'highest' if objective.maximise else 'lowest'} {objective.metric}"


def _better(objective: Objective) -> str:
    return f"{'higher' if objective.maximise else 'lower'} {objective.metric}"


def _listed(items: Sequence[Any], last: str = ", ") -> str:
    """Items joined by commas, the last one by `last`."""
    words = [str(item) for item in items]
    return last.join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


__all__ = ["front_reasons"]
