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

# Before Ray is imported: no per-trial CSV/JSON/TensorBoard loggers inside Ray's folder (the run
# directory records everything), and the plain output engine, which `verbose=0` silences.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import optuna  # noqa: E402
import ray  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import Callback  # noqa: E402
from ray.tune.search import ConcurrencyLimiter  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from evaluators.training import embed_utterances  # noqa: E402
from evaluators.verification import PreparedVerification, VerificationEvaluator  # noqa: E402
from search.config import RunConfig  # noqa: E402
from search.pareto import Objective, hypervolume_history, pareto_front  # noqa: E402
from search.run_dir import RunDirectory  # noqa: E402
from search.report_html import write_html_report  # noqa: E402
from search.tensorboard import write_embedding_projector, write_tensorboard  # noqa: E402
from search.trial import TRIAL_NUMBER, TrialContext, measure, ray_trainable  # noqa: E402

_TENSORBOARD_EVERY = 5
"""Trials between TensorBoard refreshes during a run (a refresh redraws the figures, ~1 s)."""


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
    recorder = _Recorder(run_dir, config.objectives, reference, listener, {"quantizer": config.space.quantizer})
    listener.started(config.search.trials)
    _tune(config, run_dir, context, recorder, address)
    trials = run_dir.read_trials()
    front = front_members(trials, config.objectives)
    if trials:
        write_tensorboard(run_dir)
        if front:
            _project_best_member(run_dir, evaluator, prepared, front, config.objectives[0])
        write_html_report(run_dir)
    return SearchOutcome(run_dir, reference, trials, front)


def _project_best_member(
    run_dir: RunDirectory,
    evaluator: VerificationEvaluator,
    prepared: PreparedVerification,
    front: list[dict[str, Any]],
    quality: Objective,
) -> None:
    """Embed the test set with the front's best model (first objective) for TensorBoard's projector."""
    best = (min if quality.direction == "min" else max)(front, key=lambda row: row[quality.metric])
    candidate = {knob: best[knob] for knob in prepared.space.groups}
    model = evaluator.evaluate(candidate, prepared).compressed.model
    embeddings = embed_utterances(model, prepared.test_features).numpy()
    speakers = [f"speaker-{label}" for label in prepared.test_labels]
    write_embedding_projector(run_dir, embeddings, speakers, f"trial-{best['trial']}-{quality.metric}")


def front_members(trials: list[dict[str, Any]], objectives: tuple[Objective, ...]) -> list[dict[str, Any]]:
    """Completed trials that no other completed trial dominates."""
    complete = [row for row in trials if row.get("status") == "complete"]
    return [complete[index] for index in pareto_front(complete, objectives)]


def _tune(config: RunConfig, run_dir: RunDirectory, context: TrialContext, recorder: _Recorder, address: str | None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials.csv and the display say what happens
    started_ray = _init_ray(address)
    try:
        space = context.prepared.space
        searcher = OptunaSearch(
            space=_DefineByRun(space.suggest),
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
    if ray.is_initialized():
        return False
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=os.cpu_count(), **options)
    return True


@dataclass
class _DefineByRun:
    """The space's suggest function, also tagging each Ray trial with its Optuna trial number.

    A picklable object rather than a closure: Ray checkpoints the searcher with pickle.
    """

    suggest: Callable[[Any], None]

    def __call__(self, trial: Any) -> dict[str, int]:
        self.suggest(trial)
        return {TRIAL_NUMBER: trial.ot_trial.number}


def _sampler(config: RunConfig) -> optuna.samplers.BaseSampler:
    seed = config.seed
    if config.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=config.search.population_size, seed=seed)
    if config.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _journal_storage(run_dir: RunDirectory) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(run_dir.study_journal)))


class _Recorder(Callback):
    """Persists each finished trial at once, then refreshes the front and hypervolume.

    Tune pickles its callbacks with the experiment state; the listener (a live display) is
    left out of that copy.
    """

    def __init__(
        self,
        run_dir: RunDirectory,
        objectives: tuple[Objective, ...],
        reference: dict[str, Any],
        listener: SearchListener,
        fixed_knobs: dict[str, Any],
    ) -> None:
        """`fixed_knobs` are settings every trial shares (e.g. the quantizer), recorded in each row."""
        self.run_dir = run_dir
        self.fixed_knobs = fixed_knobs
        self.objectives = objectives
        self.reference = reference
        self.listener = listener
        self.metric_keys = [key for key in reference if key not in ("trial", "status")]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "listener": SearchListener()}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if all(key in result for key in self.metric_keys):
            self._record(trial, "complete", "", {key: result[key] for key in self.metric_keys}, result.get("seconds"))
        else:
            self._record(trial, "failed", "no metrics reported", {}, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, "failed", _error_reason(trial), {}, None)

    def _record(self, trial: Any, status: str, error: str, metrics: dict[str, Any], seconds: Any) -> None:
        knobs = {key: value for key, value in trial.config.items() if key != TRIAL_NUMBER}
        row = {
            "trial": trial.config.get(TRIAL_NUMBER),
            "status": status,
            **self.fixed_knobs,
            **knobs,
            **metrics,
            "error": error,
            "seconds": round(seconds, 3) if seconds is not None else None,
        }
        self.run_dir.append_trial(row)
        rows = self.run_dir.read_trials()
        front = front_members(rows, self.objectives)
        objectives = [{"metric": o.metric, "direction": o.direction} for o in self.objectives]
        self.run_dir.write_pareto(objectives, self.reference, front)
        self.run_dir.write_hypervolume(hypervolume_history(rows, self.objectives, self.reference))
        if len(rows) % _TENSORBOARD_EVERY == 0:
            write_tensorboard(self.run_dir)
        self.listener.trial_finished(row, rows, front)


def _error_reason(trial: Any) -> str:
    """The failure's one-line reason (e.g. 'ValueError: ...'), from the trial's local error file."""
    path = trial.error_file
    text = open(path).read() if path and os.path.exists(path) else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "TrialFailure: " in line:
            return line.split("TrialFailure: ", 1)[1]
    return lines[-1] if lines else "unknown error (no error file)"
