"""Ray Tune's OptunaSearch, completed with what a compression search needs from its study.

Ray's `OptunaSearch.on_trial_complete` tells Optuna only the objective values. This subclass
first stores every metric of the result on the Optuna trial (user attributes, so the study can be
analysed and a lost row rebuilt without Ray) and each constraint's violation
(`Trial.set_constraint`, read by NSGA-II, TPE and GP), and it ends the search when a
candidate-sequence sampler has proposed its whole list.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.constraints import Constraint, violations
from search.reuse import MeasuredCandidates
from search.samplers import CandidateSequenceSampler
from search.trial import REUSED, REUSED_FROM, RUNG, TRIAL_NUMBER

_LARGE_VIOLATION = 1e300
"""Stands in for an infinite violation (a metric the result lacks): Optuna stores JSON numbers."""


def annotate_trial(
    trial: optuna.Trial, result: Mapping[str, Any], keys: Sequence[str], constraints: Sequence[Constraint]
) -> None:
    """Store `keys` of the result as user attributes and each constraint's violation on the trial."""
    for key in keys:
        value = result.get(key)
        if isinstance(value, (int, float, str, bool)) and not (isinstance(value, float) and not math.isfinite(value)):
            trial.set_user_attr(key, value)
    for name, violation in violations(constraints, result).items():
        trial.set_constraint(name, min(violation, _LARGE_VIOLATION))


class RecordingOptunaSearch(OptunaSearch):
    """`OptunaSearch` that annotates each told trial and stops when a finite sampler is used up.

    Args:
        recorded_keys: Result keys stored as user attributes (metrics, rung, steps, node).
        constraints: The run's constraints, set on each trial before it is told.
        measured: Candidates measured so far; a proposal equal to one measured through the last
            rung is marked to replay that measurement (`search.reuse`), and every result is added.
        **kwargs: `OptunaSearch` arguments.
    """

    def __init__(
        self,
        *,
        recorded_keys: Sequence[str],
        constraints: Sequence[Constraint] = (),
        measured: MeasuredCandidates | None = None,
        **kwargs: Any,
    ) -> None:
        self._recorded_keys = tuple(recorded_keys)
        self._constraints = tuple(constraints)
        self._measured = measured
        self._proposals: dict[str, dict[str, Any]] = {}
        super().__init__(**kwargs)

    def _setup_study(self, mode: str | list[str]) -> None:
        """Ray's study creation, then the objectives' names on the study: optuna-dashboard and
        `optuna.visualization` read them from the journal to title axes (else "Objective 0")."""
        super()._setup_study(mode)
        with warnings.catch_warnings():  # stable in use since Optuna 3.2, still flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([self._metric] if isinstance(self._metric, str) else list(self._metric))

    def suggest(self, trial_id: str) -> dict | str | None:
        sampler = self._ot_study.sampler if self._ot_study is not None else None
        if (
            isinstance(sampler, CandidateSequenceSampler)
            and trial_id not in self._ot_trials
            and sampler.exhausted(self._ot_study)
        ):
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict) and self._measured is not None:
            self._proposals[trial_id] = config
            earlier = self._measured.lookup(config)
            if earlier is not None:
                config = {**config, REUSED: earlier}
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._remember(trial_id, result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result and not error and trial_id not in self._completed_trials:
            annotate_trial(ot_trial, result, self._recorded_keys, self._constraints)
            self._remember(trial_id, result)
        super().on_trial_complete(trial_id, result, error)

    def _remember(self, trial_id: str, result: Mapping[str, Any]) -> None:
        proposal = self._proposals.get(trial_id)
        if self._measured is not None and proposal is not None and REUSED_FROM not in result:
            measured = {key: result[key] for key in (*self._recorded_keys, RUNG) if key in result}
            self._measured.record(proposal, proposal[TRIAL_NUMBER], measured)
