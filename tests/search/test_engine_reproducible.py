"""Two real Ray searches with one worker and one seed: same trials; constraints and the fidelity
ladder's successive halving applied by the engine (with the random sampler, which knows neither)."""

from dataclasses import replace

import optuna
import pytest

from engine_runs import write_config
from search.artifacts import read_artifact
from search.config import load_config
from search.engine import run_search
from search.run_dir import RunDirectory

EXTRA = """
search: {trials: 5, workers: 1, sampler: random, reduction_factor: 2}
fidelity: {steps: [0, 2], batch_size: 4, crop_frames: 50}
constraints: ['mean_weight_bits <= 5']
"""
VARYING = ("seconds", "node")
"""Row keys that depend on the machine's load and on which Ray node ran the trial."""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_cache_dir, ray_session):
    """The same search twice, the first keeping every trial's model and the second none (which
    must not change the search)."""
    root = tmp_path_factory.mktemp("reproducible")
    config = load_config(write_config(root / "tiny.yaml", tiny_cache_dir, EXTRA))
    keeping = [replace(config, search=replace(config.search, keep_artifacts=keep)) for keep in ("all", "none")]
    runs = [run_search(run, RunDirectory.create(root / f"results-{index}", config.name)) for index, run in enumerate(keeping)]
    return config, runs


def test_one_worker_and_one_seed_give_the_same_candidates_and_metrics(two_runs):
    _, (first, second) = two_runs
    strip = lambda rows: [{k: v for k, v in row.items() if k not in VARYING} for row in rows]  # noqa: E731
    assert strip(first.trials) == strip(second.trials)
    assert len(first.trials) == 5 and first.run_dir.read_hypervolume() == second.run_dir.read_hypervolume()


def test_every_trial_is_marked_feasible_or_not_and_the_front_is_feasible(two_runs):
    _, (run, _) = two_runs
    finished = [row for row in run.trials if row["status"] != "failed"]
    assert finished and all(row["feasible"] == (row["mean_weight_bits"] <= 5) for row in finished)
    assert any(not row["feasible"] for row in finished)
    assert run.front and all(row["feasible"] for row in run.front)


def test_halving_stops_some_trials_after_ptq_and_keeps_them_off_the_front(two_runs):
    config, (run, _) = two_runs
    stopped = [row for row in run.trials if row["status"] == "stopped"]
    complete = [row for row in run.trials if row["status"] == "complete"]
    assert stopped and complete
    assert all(row["steps"] == 0 for row in stopped) and all(row["steps"] == 2 for row in complete)
    assert {row["trial"] for row in run.front} <= {row["trial"] for row in complete}
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run.run_dir.study_journal)))
    study = optuna.load_study(study_name=config.name, storage=storage)
    told = {trial.number: trial for trial in study.trials}
    for row in stopped:  # Tune tells Optuna a stopped trial is complete: its steps say it is not
        assert told[row["trial"]].state == optuna.trial.TrialState.COMPLETE
        assert told[row["trial"]].user_attrs["steps"] == 0
    assert all(told[row["trial"]].constraints for row in run.trials if row["status"] != "failed")


def test_all_keeps_every_finished_trials_last_rung_and_none_keeps_nothing(two_runs):
    _, (every, nothing) = two_runs
    finished = [row for row in every.trials if row["status"] != "failed"]
    assert every.run_dir.artifact_trials() == sorted(row["trial"] for row in finished)
    for row in finished:  # a complete trial's rung-1 model replaced its rung-0 one
        artifact = read_artifact(every.run_dir, row["trial"])
        assert (artifact.steps, len(artifact.packed)) == (row["steps"], row["size_bytes"])
    assert nothing.run_dir.artifact_trials() == [] and not (nothing.run_dir.tensorboard_dir / "projector").exists()
