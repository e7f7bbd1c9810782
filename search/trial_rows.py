"""The rows of trials.jsonl: one per finished trial, built the same way live and on resume.

A row holds the trial number, its status, the knobs, every metric of its last reported rung,
the fine-tuning steps of that rung, whether it meets the run's constraints, the Ray node that
ran it, the trial it reused when its candidate was measured before (`search.reuse`), how many
attempts it took, the failure reason and the seconds it took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from search.constraints import Constraint, is_feasible
from search.trial import NODE, REUSED_FROM, RUNG, STEPS

COMPLETE = "complete"
"""Status of a trial that reported every rung of the fidelity ladder."""
STOPPED = "stopped"
"""Status of a trial the scheduler stopped below the last rung (its row holds its last rung's metrics)."""
FAILED = "failed"
"""Status of a trial that raised, reported a non-finite metric, lost its worker or was interrupted."""

INTERRUPTED = "interrupted: the driver stopped while the trial ran"
"""Failure reason of a trial left running by a killed driver, recorded on resume."""


@dataclass(frozen=True)
class RowSchema:
    """How this run's rows are built.

    Attributes:
        metric_keys: Metrics every finished trial reports (those of the reference row).
        rungs: Rungs of the fidelity ladder; a result below the last one is `stopped`.
        constraints: The run's constraints, deciding the `feasible` column.
        fixed_knobs: Settings shared by every trial, recorded in each row (e.g. the quantizer).
    """

    metric_keys: tuple[str, ...]
    rungs: int = 1
    constraints: tuple[Constraint, ...] = ()
    fixed_knobs: dict[str, Any] = field(default_factory=dict)

    def finished(
        self, number: int | None, knobs: Mapping[str, Any], result: Mapping[str, Any], attempts: int = 1
    ) -> dict[str, Any]:
        """The row of a trial that ended normally or was stopped, from its last result."""
        if not all(key in result for key in self.metric_keys):
            return self.failed(number, knobs, "no metrics reported", attempts)
        metrics = {key: result[key] for key in self.metric_keys}
        rung = int(result.get(RUNG, self.rungs - 1))
        seconds = result.get("seconds")
        return {
            "trial": number,
            "status": COMPLETE if rung >= self.rungs - 1 else STOPPED,
            **self.fixed_knobs,
            **knobs,
            **metrics,
            STEPS: result.get(STEPS, 0),
            "feasible": is_feasible(self.constraints, metrics),
            NODE: result.get(NODE),
            **({REUSED_FROM: result[REUSED_FROM]} if result.get(REUSED_FROM) is not None else {}),
            "attempts": attempts,
            "error": "",
            "seconds": round(seconds, 3) if seconds is not None else None,
        }

    def failed(self, number: int | None, knobs: Mapping[str, Any], reason: str, attempts: int = 1) -> dict[str, Any]:
        """The row of a trial that produced no usable result."""
        return {
            "trial": number,
            "status": FAILED,
            **self.fixed_knobs,
            **knobs,
            "attempts": attempts,
            "error": reason,
            "seconds": None,
        }


def dedupe_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with each trial number once (its first row: the one persisted as it finished); rows
    without a number cannot be told apart and are all kept."""
    seen: set[Any] = set()
    kept = []
    for row in rows:
        number = row.get("trial")
        if number is not None:
            if number in seen:
                continue
            seen.add(number)
        kept.append(dict(row))
    return kept
