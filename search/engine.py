"""Run a compression search: Optuna proposes, Ray Tune evaluates, the run directory records.

The pieces are composed here and nowhere else: the sampler (Optuna), the executor (Ray Tune,
local or a cluster), the evaluator, and the recorder that persists each trial as it finishes.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search.config import RunConfig
from search.pareto import Objective, hypervolume_history, pareto_front
from search.run_dir import RunDirectory
from search.trial import TRIAL_NUMBER, TrialContext, measure
from evaluators.verification import VerificationEvaluator

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")


@dataclass
class SearchOutcome:
    """What a finished search hands back to the CLI."""

    run_dir: RunDirectory
    reference: dict[str, Any]
    trials: list[dict[str, Any]]
    front: list[dict[str, Any]]


class SearchListener:
    """Hooks for a progress display; every method is optional to override."""

    def stage(self, description: str, done: int, total: int) -> None:
        """Preparation progress (features, teacher training)."""

    def started(self, total_trials: int) -> None:
        """The trial loop starts."""

    def trial_finished(self, row: dict[str, Any], trials: list[dict[str, Any]], front: list[dict[str, Any]]) -> None:
        """A trial completed or failed; `front` is the current non-dominated set."""


def run_search(
    config: RunConfig,
    run_dir: RunDirectory,
    address: str | None = None,
    listener: SearchListener | None = None,
) -> SearchOutcome:
    """Prepare data and teacher, evaluate the FP32 reference, then run the search to its budget."""
    listener = listener or SearchListener()
    run_dir.write_config(config.to_dict())
    evaluator = VerificationEvaluator()
    prepared = evaluator.prepare(config, listener.stage)
    listener.stage("FP32 reference", 0, 1)
    reference_evaluation = evaluator.evaluate_reference(prepared)
    reference_size = reference_evaluation.metrics["size_bytes"]
    reference = {"trial": "fp32", "status": "reference", **measure(reference_evaluation, config.targets, reference_size)}
    run_dir.write_reference(reference)
    listener.stage("FP32 reference", 1, 1)
    context = TrialContext(prepared, config.targets, reference_size, config.search.cpus_per_trial)
    recorder = _make_recorder(run_dir, config.objectives, reference, listener)
    listener.started(config.search.trials)
    _tune(config, run_dir, context, recorder, address)
    trials = run_dir.read_trials()
    return SearchOutcome(run_dir, reference, trials, front_members(trials, config.objectives))


def front_members(trials: list[dict[str, Any]], objectives: tuple[Objective, ...]) -> list[dict[str, Any]]:
    """Completed trials that no other completed trial dominates."""
    complete = [row for row in trials if row.get("status") == "complete"]
    return [complete[index] for index in pareto_front(complete, objectives)]


def _tune(config: RunConfig, run_dir: RunDirectory, context: TrialContext, recorder: Any, address: str | None) -> None:
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from search.trial import ray_trainable

    started_ray = _init_ray(address)
    try:
        space = context.prepared.space
        searcher = OptunaSearch(
            space=_define_by_run(space.suggest),
            metric=[objective.metric for objective in config.objectives],
            mode=[objective.direction for objective in config.objectives],
            sampler=_sampler(config),
            storage=_journal_storage(run_dir),
            study_name=config.name,
            points_to_evaluate=[space.uniform_candidate(bits) for bits in config.space.baselines],
        )
        trainable = tune.with_resources(
            tune.with_parameters(ray_trainable, context=context), {"cpu": config.search.cpus_per_trial}
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=config.search.workers),
                num_samples=config.search.trials,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(run_dir.ray_dir.resolve()),
                callbacks=[recorder],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()


def _init_ray(address: str | None) -> bool:
    """Start local Ray sized to this machine, or join `address`; False when Ray was already up."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=os.cpu_count(), **options)
    return True


def _define_by_run(suggest: Callable[[Any], None]) -> Callable[[Any], dict[str, int]]:
    """Wrap the space's suggest function so each Ray trial also carries its Optuna trial number."""

    def define(trial: Any) -> dict[str, int]:
        suggest(trial)
        return {TRIAL_NUMBER: trial.ot_trial.number}

    return define


def _sampler(config: RunConfig) -> Any:
    import optuna

    seed = config.seed
    if config.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=config.search.population_size, seed=seed)
    if config.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _journal_storage(run_dir: RunDirectory) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(run_dir.study_journal)))


def _make_recorder(run_dir: RunDirectory, objectives: tuple[Objective, ...], reference: dict[str, Any], listener: SearchListener) -> Any:
    from ray.tune import Callback

    metric_keys = [key for key in reference if key not in ("trial", "status")]

    class Recorder(Callback):
        """Persists each finished trial at once, then refreshes the front and hypervolume."""

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            if all(key in result for key in metric_keys):
                self._record(trial, "complete", "", {key: result[key] for key in metric_keys}, result.get("seconds"))
            else:
                self._record(trial, "failed", "no metrics reported", {}, None)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._record(trial, "failed", _error_reason(trial), {}, None)

        def _record(self, trial: Any, status: str, error: str, metrics: dict[str, Any], seconds: Any) -> None:
            knobs = {key: value for key, value in trial.config.items() if key != TRIAL_NUMBER}
            row = {
                "trial": trial.config.get(TRIAL_NUMBER),
                "status": status,
                **knobs,
                **metrics,
                "error": error,
                "seconds": round(seconds, 3) if seconds is not None else None,
            }
            run_dir.append_trial(row)
            rows = run_dir.read_trials()
            front = front_members(rows, objectives)
            run_dir.write_pareto([{"metric": o.metric, "direction": o.direction} for o in objectives], reference, front)
            run_dir.write_hypervolume(hypervolume_history(rows, objectives, reference))
            listener.trial_finished(row, rows, front)

    return Recorder()



def _error_reason(trial: Any) -> str:
    """The last line of the trial's error trace (e.g. 'TrialFailure: ValueError: ...')."""
    text = trial.get_error() or ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in reversed(lines):
        if "TrialFailure" in line:
            return line.split("TrialFailure: ", 1)[-1]
    return lines[-1] if lines else "unknown error"
