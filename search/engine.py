"""Run a compression search: Optuna proposes, Ray Tune evaluates, the run directory records.

The pieces are composed here and nowhere else: the sampler (`search.samplers`), the executor
(Ray Tune, local or a cluster), the multi-fidelity scheduler (`search.scheduler`), the
evaluator, and the recorder that persists each trial as it finishes. `resume_search` continues a
run whose driver died from its run directory alone (`search.resume`).
"""

from __future__ import annotations

import logging
import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

# Before Ray is imported: no per-trial CSV/JSON/TensorBoard loggers inside Ray's folder (the run
# directory records everything), and the plain output engine, which `verbose=0` silences.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C and SIGTERM reach the engine as KeyboardInterrupt, which records the running trials as
# interrupted; Tune's own handler would end the search as if it had finished.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

import optuna  # noqa: E402
import ray  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import Callback  # noqa: E402
from ray.tune.search import ConcurrencyLimiter  # noqa: E402

from evaluators.training import embed_utterances  # noqa: E402
from evaluators.evaluation import Evaluator, Prepared  # noqa: E402
from evaluators.verification import PreparedVerification  # noqa: E402
from search.artifacts import (  # noqa: E402
    KEEP_NONE,
    artifact_trial,
    open_artifact_channel,
    prune_artifacts,
    read_artifact,
)
from search.config import RunConfig, load_config  # noqa: E402
from search.front import front_members, write_front_files  # noqa: E402
from search.optuna_search import RecordingOptunaSearch  # noqa: E402
from search.pareto import Objective  # noqa: E402
from search.report_html import write_html_report  # noqa: E402
from search.reuse import MeasuredCandidates  # noqa: E402
from search.resume import (  # noqa: E402
    check_recorded_candidates,
    reconcile,
    resumed_seed,
    retried_trials,
    retry_interrupted,
)
from search.refresh_budget import RefreshBudget  # noqa: E402
from search.run_dir import MissingArtifactError, RunDirectory  # noqa: E402
from search.samplers import build_sampler, get_sampler_kind, layer_params  # noqa: E402
from search.scheduler import ParetoHalving, ParetoHalvingScheduler  # noqa: E402
from search.sensitivity_tables import AllocationSource  # noqa: E402
from search.tasks import get_task  # noqa: E402
from search.tensorboard import write_embedding_projector, write_tensorboard  # noqa: E402
from search.trial import (  # noqa: E402
    NODE,
    REUSED,
    REUSED_FROM,
    RUNG,
    STEPS,
    TRIAL_NUMBER,
    TrialContext,
    measure,
    ray_trainable,
)
from search.trial_rows import RowSchema  # noqa: E402
from spaces.space import SearchSpace  # noqa: E402

__all__ = ["SearchListener", "SearchOutcome", "front_members", "resume_search", "run_search", "start_local_ray"]

_TENSORBOARD_WAIT_FACTOR = 40.0
"""Seconds between TensorBoard refreshes per second the last one took: about 1/41 of the driver's time."""
_TENSORBOARD_MIN_INTERVAL = 5.0
"""Seconds between TensorBoard refreshes on a short run, where a refresh is cheap."""


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
        """A trial completed, was stopped or failed; `front` is the current non-dominated set."""


def run_search(
    config: RunConfig,
    run_dir: RunDirectory,
    address: str | None = None,
    listener: SearchListener | None = None,
    evaluator: Evaluator | None = None,
) -> SearchOutcome:
    """Prepare data and teacher, evaluate the FP32 reference, then run the search to its budget.

    Args:
        address: Ray cluster to join (`auto` or `HOST:PORT`); a local Ray sized to the machine
            when None.
        evaluator: Scores the candidates; the run task's own evaluator when None (tests and
            callers inject another, e.g. one that fails on purpose).
    """
    listener = listener or SearchListener()
    run_dir.write_config(config.to_dict())
    task = get_task(config.task)
    evaluator = evaluator or task.evaluator()
    prepared = evaluator.prepare(task.setup(config), listener.stage)
    listener.stage("FP32 reference", 0, 1)
    reference_evaluation = evaluator.evaluate_reference(prepared)
    reference_size = reference_evaluation.metrics["size_bytes"]
    reference_metrics = measure(
        reference_evaluation, config.targets, reference_size, measured_targets=config.measured_target_names
    )
    reference = {"trial": "fp32", "status": "reference", **reference_metrics}
    run_dir.write_reference(reference)
    listener.stage("FP32 reference", 1, 1)
    return _search(config, run_dir, evaluator, prepared, reference, address, listener, resumed=False)


def resume_search(
    run_dir: RunDirectory,
    address: str | None = None,
    listener: SearchListener | None = None,
    evaluator: Evaluator | None = None,
) -> SearchOutcome:
    """Continue a run whose driver stopped (killed, crashed, interrupted) to its trial budget.

    The resolved config, reference row, trials.jsonl and Optuna study of `run_dir` are all it
    needs: completed trials are kept, duplicates dropped, orphaned running trials recorded
    failed, and the study continues with the remaining budget (see `search.resume`).
    """
    listener = listener or SearchListener()
    config = load_config(run_dir.config_path)
    reference = run_dir.read_reference()
    task = get_task(config.task)
    check_recorded_candidates(
        SearchSpace.for_model(config.space, task.model_spec(config)), run_dir.read_trials(), run_dir.config_path
    )
    run_dir.drop_partial_writes()
    evaluator = evaluator or task.evaluator()
    prepared = evaluator.prepare(task.setup(config), listener.stage)
    return _search(config, run_dir, evaluator, prepared, reference, address, listener, resumed=True)


def _search(
    config: RunConfig,
    run_dir: RunDirectory,
    evaluator: Evaluator,
    prepared: Prepared,
    reference: dict[str, Any],
    address: str | None,
    listener: SearchListener,
    resumed: bool,
) -> SearchOutcome:
    schema = RowSchema(
        metric_keys=tuple(key for key in reference if key not in ("trial", "status")),
        rungs=len(config.fidelity.steps),
        constraints=config.constraints,
        fixed_knobs={"quantizer": config.space.quantizer},
    )
    stopped_in_front = config.search.stopped_in_front
    replaced = 0  # interrupted trials whose retry spends the budget in their place
    if resumed:
        study = _study(run_dir, config)
        reconcile(run_dir, study, schema, config.objectives)
        if config.search.retry_interrupted:
            retry_interrupted(study, run_dir.read_trials())
        replaced = len(retried_trials(study))
        write_front_files(run_dir, config.objectives, reference, stopped_in_front)
    remaining = config.search.trials - (len(run_dir.read_trials()) - replaced)
    context = TrialContext(
        prepared, config.targets, reference["size_bytes"], config.search.cpus_per_trial, evaluator,
        measured_targets=config.measured_targets,
    )  # fmt: skip
    recorder = _Recorder(
        run_dir, schema, config.objectives, reference, stopped_in_front, config.search.keep_artifacts, listener
    )
    listener.started(config.search.trials)
    if remaining > 0:
        try:
            _tune(config, run_dir, context, recorder, address, remaining, resumed)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trials still running are recorded as interrupted
            reconcile(run_dir, _study(run_dir, config), schema, config.objectives)
            write_front_files(run_dir, config.objectives, reference, stopped_in_front)
            raise
    trials = run_dir.read_trials()
    front = front_members(trials, config.objectives, stopped_in_front)
    if trials:
        write_tensorboard(run_dir)
        if front and get_task(config.task).embeds:  # an extractor has no embeddings to project
            _project_best_member(run_dir, prepared, front, config.objectives[0])
        write_html_report(run_dir)
    return SearchOutcome(run_dir, reference, trials, front)


def _project_best_member(
    run_dir: RunDirectory, prepared: PreparedVerification, front: list[dict[str, Any]], quality: Objective
) -> None:
    """Embed the test set with the front's best model (first objective) for TensorBoard's projector.

    The model is rebuilt from the trial's artifact, never trained again; a run that kept none
    (`search.keep_artifacts: none`) has no projector.
    """
    best = (min if quality.direction == "min" else max)(front, key=lambda row: row[quality.metric])
    try:
        artifact = read_artifact(run_dir, artifact_trial(best))
    except MissingArtifactError:
        return
    embeddings = embed_utterances(artifact.rebuild().model, prepared.test_features).numpy()
    speakers = [f"speaker-{label}" for label in prepared.test_labels]
    write_embedding_projector(run_dir, embeddings, speakers, f"trial-{best['trial']}-{quality.metric}")


def _tune(
    config: RunConfig,
    run_dir: RunDirectory,
    context: TrialContext,
    recorder: _Recorder,
    address: str | None,
    num_samples: int,
    resumed: bool,
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials.csv and the display say what happens
    space = context.prepared.space
    sampler = build_sampler(
        config.search.sampler,
        seed=resumed_seed(config.seed, len(run_dir.read_trials())) if resumed else config.seed,
        population_size=config.search.population_size,
        space=space,
        sensitivities=getattr(context.prepared, "sensitivities", None),
        layer_params=layer_params(space, context.prepared.teacher_state),
        allocation=AllocationSource(config, context.prepared, progress=recorder.listener.stage, run_dir=run_dir),
    )
    # Baselines are enqueued in the study once; on resume, those not yet run are still waiting there.
    # nsga2's warm start holds every uniform width, these among them; it skips a candidate a trial
    # already has, so for nsga2 a baseline only runs first, never twice.
    with_baselines = not resumed and not get_sampler_kind(config.search.sampler).replays_sequence
    searcher = RecordingOptunaSearch(
        recorded_keys=[*recorder.schema.metric_keys, RUNG, STEPS, NODE, "seconds", REUSED_FROM],
        constraints=config.constraints,
        measured=MeasuredCandidates.from_rows(
            run_dir.read_trials(), recorder.schema.rungs, recorder.schema.metric_keys, space.candidate_from_row
        ),
        space=_DefineByRun(space.suggest),
        metric=[objective.metric for objective in config.objectives],
        mode=[objective.direction for objective in config.objectives],
        sampler=sampler,
        storage=_journal_storage(run_dir),
        study_name=config.name,
        points_to_evaluate=[space.uniform_candidate(bits) for bits in config.space.baselines if with_baselines],
    )
    halving = ParetoHalving(
        config.objectives, recorder.schema.rungs, config.search.reduction_factor, config.constraints
    )
    started_ray = _init_ray(address)
    channel = None
    try:
        if config.search.keep_artifacts != KEEP_NONE:
            channel = open_artifact_channel(run_dir)
        trainable = tune.with_resources(
            tune.with_parameters(ray_trainable, context=replace(context, artifacts=channel)),
            {"cpu": config.search.cpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=config.search.workers),
                scheduler=ParetoHalvingScheduler(halving),
                num_samples=num_samples,
                # One worker process per concurrent trial for the whole run, not one per trial: a
                # new process per trial costs seconds of start-up and grows the driver's memory.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"tune-resumed-{time.strftime('%Y%m%d-%H%M%S')}" if resumed else "tune",
                storage_path=config.search.storage or str(run_dir.ray_dir.resolve()),
                callbacks=[recorder],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=config.search.retries, fail_fast=False),
            ),
        )
        with warnings.catch_warnings(), _sigterm_interrupts():
            warnings.simplefilter("ignore")
            tuner.fit()
    finally:
        if channel is not None:
            channel.close()
        if started_ray:
            ray.shutdown()


_RAY_OPTIONS: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
"""No dashboard (an HTTP server), no worker logs in the driver's output (trials.csv has the errors)."""


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start a Ray of this process's own on this machine, never joining one already running here.

    `address="local"` starts a new cluster even when another program runs one. Its services
    listen on the machine's interfaces (Ray does not let us narrow them to loopback); they
    require Ray's token authentication, the default of a new local cluster since Ray 2.59
    (`RAY_AUTH_MODE` unset), and the dashboard and client server stay off. Tests check both.
    """
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **_RAY_OPTIONS)


def _init_ray(address: str | None) -> bool:
    """Start this run's own local Ray sized to the machine, or join `address`; False when Ray was already up."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, **_RAY_OPTIONS)
    else:
        start_local_ray()
    return True


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the driver while the search runs, as Ctrl-C does.

    Installed after Ray is up, it replaces the handler Ray's core worker sets, which dumps C++
    stacks; the previous handler comes back afterwards. Only the main thread can set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _DefineByRun:
    """The space's suggest function, also tagging each Ray trial with its Optuna trial number.

    A picklable object rather than a closure: Ray checkpoints the searcher with pickle.
    """

    suggest: Callable[[Any], None]

    def __call__(self, trial: Any) -> dict[str, int]:
        self.suggest(trial)
        return {TRIAL_NUMBER: trial.ot_trial.number}


def _journal_storage(run_dir: RunDirectory) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(run_dir.study_journal)))


def _study(run_dir: RunDirectory, config: RunConfig) -> optuna.Study:
    """The run's Optuna study, created empty when the driver died before creating it."""
    return optuna.create_study(
        storage=_journal_storage(run_dir),
        study_name=config.name,
        directions=["minimize" if objective.direction == "min" else "maximize" for objective in config.objectives],
        load_if_exists=True,
    )


class _Recorder(Callback):
    """Persists each finished trial at once, then refreshes the front and hypervolume and prunes
    the artifacts the run does not keep (`search.artifacts.prune_artifacts`).

    Tune pickles its callbacks with the experiment state; the listener (a live display) is
    left out of that copy.
    """

    def __init__(
        self,
        run_dir: RunDirectory,
        schema: RowSchema,
        objectives: tuple[Objective, ...],
        reference: dict[str, Any],
        stopped_in_front: bool,
        keep_artifacts: str,
        listener: SearchListener,
    ) -> None:
        self.run_dir = run_dir
        self.schema = schema
        self.objectives = objectives
        self.reference = reference
        self.stopped_in_front = stopped_in_front
        self.keep_artifacts = keep_artifacts
        self.listener = listener
        self.recoveries: dict[str, int] = {}
        self.tensorboard = RefreshBudget(_TENSORBOARD_WAIT_FACTOR, _TENSORBOARD_MIN_INTERVAL)
        rows = run_dir.read_trials()
        self.recorded = {row.get("trial") for row in rows}
        # a resumed run: what its interrupted trials sent before the driver died
        prune_artifacts(run_dir, rows, front_members(rows, objectives, stopped_in_front), keep_artifacts)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "listener": SearchListener()}

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed attempt that Tune retries: counted in the row's `attempts`."""
        self.recoveries[trial.trial_id] = self.recoveries.get(trial.trial_id, 0) + 1

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self._record(trial, lambda number, knobs, attempts: self.schema.finished(number, knobs, result, attempts))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = _error_reason(trial)
        self._record(trial, lambda number, knobs, attempts: self.schema.failed(number, knobs, reason, attempts))

    def _record(self, trial: Any, build: Callable[[Any, dict[str, Any], int], dict[str, Any]]) -> None:
        number = trial.config.get(TRIAL_NUMBER)
        if number in self.recorded:  # Tune can report an ending twice; the first row stands
            return
        knobs = {key: value for key, value in trial.config.items() if key not in (TRIAL_NUMBER, REUSED)}
        row = build(number, knobs, 1 + self.recoveries.get(trial.trial_id, 0))
        self.run_dir.append_trial(row)
        self.recorded.add(number)
        rows, front = write_front_files(self.run_dir, self.objectives, self.reference, self.stopped_in_front)
        prune_artifacts(self.run_dir, rows, front, self.keep_artifacts)
        if self.tensorboard.due():
            self.tensorboard.run(lambda: write_tensorboard(self.run_dir))
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
