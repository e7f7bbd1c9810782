"""Candidates measured before are not measured again: their rung results are replayed.

Small spaces make samplers repeat themselves (a genetic sampler's children often equal a parent),
and a resumed run may propose what the stopped one measured. Evaluation is deterministic for a
candidate, so the driver keeps every candidate's results per rung (`MeasuredCandidates`, inside
the searcher); when a proposal equals a candidate measured through the last rung, its config
carries those results under `REUSED`, and the worker reports them as they were instead of
evaluating (`search.trial.ray_trainable`). The row records the trial it reused (`REUSED_FROM`).
A repeat proposed while the first measurement is still running is evaluated again: there is
nothing to replay yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from search.trial import REUSED, REUSED_FROM, RUNG, STEPS, TRIAL_NUMBER


def candidate_key(candidate: Mapping[str, Any]) -> str:
    """The candidate's knobs as one comparable string (bookkeeping keys left out)."""
    knobs = {key: value for key, value in candidate.items() if key not in (TRIAL_NUMBER, REUSED)}
    return json.dumps(knobs, sort_keys=True)


@dataclass
class MeasuredCandidates:
    """Each candidate's first measurement, rung by rung, and which trial made it.

    Attributes:
        rungs: Rungs of the run's fidelity ladder; only a candidate measured through the last
            one is reused (one stopped early says nothing about the later rungs).
    """

    rungs: int
    _results: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        rungs: int,
        metric_keys: Iterable[str],
        candidate_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> MeasuredCandidates:
        """The completed trials of a run directory, each as its last rung's result.

        Args:
            candidate_of: The knobs of a row (`SearchSpace.candidate_from_row`).
        """
        measured = cls(rungs)
        keys = tuple(metric_keys)
        for row in rows:
            if row.get("status") == "complete" and row.get(REUSED_FROM) is None:
                result = {key: row[key] for key in keys if key in row}
                measured.record(candidate_of(row), row["trial"], {**result, RUNG: rungs - 1, STEPS: row.get(STEPS, 0)})
        return measured

    def record(self, candidate: Mapping[str, Any], trial: int, result: Mapping[str, Any]) -> None:
        """Keep a rung's result of `trial` (the first trial to measure a candidate is the one kept)."""
        owner, results = self._results.setdefault(candidate_key(candidate), (trial, []))
        if owner == trial and all(previous.get(RUNG) != result.get(RUNG) for previous in results):
            results.append(dict(result))

    def lookup(self, candidate: Mapping[str, Any]) -> dict[str, Any] | None:
        """The earlier measurement of `candidate` through the last rung, as the `REUSED` config value."""
        found = self._results.get(candidate_key(candidate))
        if found is None or not any(result.get(RUNG) == self.rungs - 1 for result in found[1]):
            return None
        trial, results = found
        return {"trial": trial, "rungs": sorted(results, key=lambda result: result.get(RUNG, 0))}


__all__ = ["MeasuredCandidates", "candidate_key"]
