"""A real Ray search where one trial's worker is killed mid-trial, one reports NaN and one raises."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle as cloudpickle
from optuna.trial import TrialState

from engine_runs import write_config
from evaluators.verification import VerificationEvaluator
from search import engine
from search.config import load_config
from search.run_dir import RunDirectory

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class FaultyEvaluator(VerificationEvaluator):
    """Uniform 8 bits: the first attempt waits until its worker is killed; 4 bits: NaN EER; 2 bits: raises."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def evaluate_ladder(self, candidate, prepared):
        bits = candidate["bits.stem"]
        if bits == 2:
            raise ValueError("injected failure")
        victim = Path(self.marker_dir) / "victim.pid"
        if bits == 8 and not victim.exists():
            victim.write_text(str(os.getpid()))
            time.sleep(300)
        for steps, evaluation in super().evaluate_ladder(candidate, prepared):
            if bits == 4:
                evaluation.metrics["eer"] = float("nan")
            yield steps, evaluation


def _kill_victim(marker: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 240
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if marker.exists():
        time.sleep(0.5)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, tiny_cache_dir, ray_session):
    root = tmp_path_factory.mktemp("faults")
    extra = "search: {trials: 5, workers: 2, retries: 1, sampler: uniform-grid}\n"
    config = load_config(write_config(root / "tiny.yaml", tiny_cache_dir, extra))
    run_dir = RunDirectory.create(root / "results", config.name)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_victim, args=(root / "victim.pid", killed), daemon=True)
    killer.start()
    outcome = engine.run_search(config, run_dir, evaluator=FaultyEvaluator(str(root)))
    killer.join(timeout=1)
    return config, outcome, killed


def test_the_killed_worker_is_retried_and_its_trial_completes(faulty_run):
    _, outcome, killed = faulty_run
    assert killed and killed[0] != os.getpid()
    (row,) = [row for row in outcome.trials if row["bits.stem"] == 8]
    assert row["status"] == "complete" and row["attempts"] == 2 and 0.0 <= row["eer"] <= 1.0
    assert row["node"] and row["steps"] == 0 and row["feasible"] is True


def test_raising_and_nan_trials_are_recorded_failed_with_their_reasons_after_retries(faulty_run):
    _, outcome, _ = faulty_run
    by_bits = {row["bits.stem"]: row for row in outcome.trials}
    assert by_bits[4]["status"] == "failed" and "non-finite metric(s) ['eer']" in by_bits[4]["error"]
    assert by_bits[2]["status"] == "failed" and "ValueError: injected failure" in by_bits[2]["error"]
    assert by_bits[4]["attempts"] == by_bits[2]["attempts"] == 2
    assert outcome.run_dir.artifact_trials() == [by_bits[8]["trial"]]  # failed trials keep no model


def test_the_search_goes_on_to_the_end_of_the_grid_and_the_study_agrees(faulty_run):
    config, outcome, _ = faulty_run
    assert sorted(row["bits.stem"] for row in outcome.trials) == [2, 4, 8]  # the grid, then it stops
    assert sorted(row["trial"] for row in outcome.trials) == [0, 1, 2]
    assert [row["trial"] for row in outcome.front] == [row["trial"] for row in outcome.trials if row["bits.stem"] == 8]
    backend = optuna.storages.journal.JournalFileBackend(str(outcome.run_dir.study_journal))
    study = optuna.load_study(study_name=config.name, storage=optuna.storages.JournalStorage(backend))
    states = {trial.params["bits.stem"]: trial.state for trial in study.trials}
    assert states == {8: TrialState.COMPLETE, 4: TrialState.FAIL, 2: TrialState.FAIL}
    (complete,) = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert complete.user_attrs["size_bytes"] == outcome.front[0]["size_bytes"]
