"""Bring a run whose driver died back to a consistent state, so the search can continue it.

The run directory's trials.jsonl (appended and fsynced as each trial ends) and the Optuna study
(journal file) are the sources of truth; Ray's own experiment state, saved periodically, is not
used. A driver killed mid-run can leave the two out of step, and `reconcile` repairs each case:

- a trial number recorded twice: the first row is kept;
- an Optuna trial still RUNNING with a row: it is told from the row (complete or failed);
- an Optuna trial still RUNNING without a row (its worker died with the driver): it is marked
  failed in the study and recorded failed with reason `INTERRUPTED`;
- an Optuna trial told but not recorded (killed between the two writes): its row is rebuilt from
  the metrics stored on the trial.

Every finished trial counts against the budget, except an interrupted one that is run again
(`retry_interrupted`): its retry takes its place, so a resumed run ends with `search.trials`
trials in the study and in trials.jsonl beside the interrupted ones it retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.optuna_search import annotate_trial
from search.pareto import Objective
from search.run_config import ConfigError
from search.run_dir import RunDirectory
from search.trial_rows import COMPLETE, FAILED, INTERRUPTED, STOPPED, RowSchema, dedupe_rows
from spaces.knobs import SpaceError
from spaces.space import SearchSpace


@dataclass(frozen=True)
class Reconciliation:
    """What `reconcile` found and repaired.

    Attributes:
        finished: Trials recorded after the repair (the budget already spent).
        duplicates_dropped: Rows removed because their trial number was recorded before.
        told_from_rows: Trial numbers still RUNNING in the study but recorded, now told.
        interrupted: Trial numbers left RUNNING by the dead driver, now failed.
        rebuilt: Trial numbers told to the study but missing from trials.jsonl, now recorded.
    """

    finished: int
    duplicates_dropped: int
    told_from_rows: tuple[int, ...]
    interrupted: tuple[int, ...]
    rebuilt: tuple[int, ...]


def reconcile(
    run_dir: RunDirectory, study: optuna.Study, schema: RowSchema, objectives: Sequence[Objective]
) -> Reconciliation:
    """Make trials.jsonl and the study agree (see the module docstring); call with no search running."""
    original = run_dir.read_trials()
    rows = dedupe_rows(original)
    by_number = {row["trial"]: row for row in rows if row.get("trial") is not None}
    told, interrupted, rebuilt = [], [], []
    for trial in study.get_trials(deepcopy=False):
        row = by_number.get(trial.number)
        if trial.state == TrialState.RUNNING and row is not None:
            _tell_from_row(study, trial, row, schema, objectives)
            told.append(trial.number)
        elif trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            rows.append(schema.failed(trial.number, trial.params, INTERRUPTED))
            interrupted.append(trial.number)
        elif row is None and trial.state != TrialState.WAITING:
            rows.append(_row_from_study(trial, schema))
            rebuilt.append(trial.number)
    if rows != original:
        run_dir.rewrite_trials(rows)
    return Reconciliation(
        finished=len(rows),
        duplicates_dropped=len(original) - len(dedupe_rows(original)),
        told_from_rows=tuple(told),
        interrupted=tuple(interrupted),
        rebuilt=tuple(rebuilt),
    )


RETRY_OF = "retry_of"
"""User attribute of a trial enqueued to run an interrupted trial again: the interrupted trial's number."""


def retry_interrupted(study: optuna.Study, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Enqueue, once each, the candidates of interrupted trials not run again yet; returns their numbers.

    A trial that was itself a retry is not retried again, so a candidate that kills its driver
    cannot make every resume start with it.
    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_trials(study)
    retries = {trial.number for trial in trials if RETRY_OF in trial.user_attrs}
    interrupted = [row["trial"] for row in rows if row.get("error") == INTERRUPTED]
    chosen = [number for number in interrupted if number not in retried and number not in retries]
    by_number = {trial.number: trial for trial in trials}
    for number in chosen:
        study.enqueue_trial(by_number[number].params, user_attrs={RETRY_OF: number})
    return chosen


def retried_trials(study: optuna.Study) -> set[int]:
    """Numbers of the interrupted trials that have a retry in the study (waiting, running or finished).

    Such a trial's row stays in trials.jsonl, but its retry spends the budget in its place.
    """
    return {trial.user_attrs[RETRY_OF] for trial in study.get_trials(deepcopy=False) if RETRY_OF in trial.user_attrs}


def check_recorded_candidates(space: SearchSpace, rows: Sequence[dict[str, Any]], config_path: Path) -> None:
    """Every recorded trial's knobs still fit the run's space, or the resume stops before writing.

    A config edited between the stop and the resume (a bits choice removed, a knob renamed) would
    otherwise fail deep inside the sampler, which cannot tell the study's old values apart.

    Raises:
        ConfigError: Naming the config, each mismatch and the trials that recorded it.
    """
    mismatches: dict[str, list[int]] = {}
    for row in rows:
        if row.get("status") == FAILED:
            continue
        try:
            space.plan(space.candidate_from_row(row))
        except SpaceError as error:
            mismatches.setdefault(str(error), []).append(row.get("trial"))
    if mismatches:
        first, trials = next(iter(mismatches.items()))
        more = f" (and {len(mismatches) - 1} other mismatch(es))" if len(mismatches) > 1 else ""
        raise ConfigError(
            f"{config_path}: the space changed since trials {trials[:10]} ran: {first}{more}; "
            "restore the run's config.yaml, or start a new run"
        )


def resumed_seed(seed: int, finished: int) -> int:
    """The samplers' seed when a run resumes after `finished` trials.

    Optuna's samplers keep their random state in memory only: reseeded with the run's seed, a
    resumed search would propose its first candidates again. Mixing in the number of finished
    trials gives each resume point its own stream, still reproducible from the run directory.
    """
    return int(np.random.SeedSequence([seed, finished]).generate_state(1)[0])


def _tell_from_row(
    study: optuna.Study, trial: FrozenTrial, row: dict[str, Any], schema: RowSchema, objectives: Sequence[Objective]
) -> None:
    if row.get("status") in (COMPLETE, STOPPED):
        live = optuna.Trial(study, trial._trial_id)
        annotate_trial(live, row, schema.metric_keys, schema.constraints)
        study.tell(trial.number, [row[objective.metric] for objective in objectives])
    else:
        study.tell(trial.number, state=TrialState.FAIL)


def _row_from_study(trial: FrozenTrial, schema: RowSchema) -> dict[str, Any]:
    """The row of a trial the study holds but trials.jsonl lost, from its stored metrics."""
    if trial.state == TrialState.COMPLETE:
        return schema.finished(trial.number, trial.params, trial.user_attrs)
    reason = "no metrics reported" if trial.state == TrialState.PRUNED else f"{FAILED} (reason lost with the driver)"
    return schema.failed(trial.number, trial.params, reason)
