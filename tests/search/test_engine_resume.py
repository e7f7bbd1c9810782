"""Resume: reconciling trials.jsonl with the study, and a real run whose driver is SIGKILLed."""

import json
import os
import shutil
import signal

import optuna
import yaml
from optuna.trial import TrialState

from engine_runs import kill_session, start_driver, wait_for, write_config
from search.cli import main
from search.pareto import Objective
from search.resume import reconcile, resumed_seed, retry_interrupted
from search.run_dir import RunDirectory
from search.trial_rows import INTERRUPTED, RowSchema, dedupe_rows

OBJECTIVES = (Objective("eer", "min"), Objective("size_bytes", "min"))
SCHEMA = RowSchema(metric_keys=("eer", "size_bytes"), fixed_knobs={"quantizer": "uniform"})


def journal_study(run_dir: RunDirectory) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir.study_journal)))
    return optuna.create_study(
        storage=storage, study_name="run", directions=["minimize", "minimize"], load_if_exists=True
    )


def test_reconcile_repairs_every_way_a_killed_driver_leaves_a_run(tmp_path):
    run_dir = RunDirectory(tmp_path)
    study = journal_study(run_dir)
    for bits in (8, 4, 2, 8):
        study.enqueue_trial({"bits.a": bits})
    trials = [study.ask() for _ in range(4)]
    for trial in trials:
        trial.suggest_categorical("bits.a", [2, 4, 8])
    study.enqueue_trial({"bits.a": 4})  # a baseline never started: stays waiting
    rows = {
        0: SCHEMA.finished(0, {"bits.a": 8}, {"eer": 0.1, "size_bytes": 800}),
        1: SCHEMA.finished(1, {"bits.a": 4}, {"eer": 0.2, "size_bytes": 400}),
    }
    study.tell(trials[0], [0.1, 800])  # 0: told and recorded
    # 1: recorded, never told; 2: running when the driver died; 3: told, row lost before the fsync
    trials[3].set_user_attr("eer", 0.3)
    trials[3].set_user_attr("size_bytes", 100.0)
    study.tell(trials[3], [0.3, 100.0])
    run_dir.rewrite_trials([rows[0], rows[1], rows[0]])  # and a duplicate of trial 0

    result = reconcile(run_dir, journal_study(run_dir), SCHEMA, OBJECTIVES)

    recorded = run_dir.read_trials()
    assert [row["trial"] for row in recorded] == [0, 1, 2, 3]
    assert recorded[:2] == [rows[0], rows[1]]
    assert recorded[2]["status"] == "failed" and recorded[2]["error"] == INTERRUPTED and recorded[2]["bits.a"] == 2
    assert recorded[3]["status"] == "complete" and recorded[3]["eer"] == 0.3 and recorded[3]["bits.a"] == 8
    assert (result.finished, result.duplicates_dropped) == (4, 1)
    assert (result.told_from_rows, result.interrupted, result.rebuilt) == ((1,), (2,), (3,))
    states = [trial.state for trial in journal_study(run_dir).trials]
    complete, fail, waiting = TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING
    assert states == [complete, complete, fail, complete, waiting]
    assert journal_study(run_dir).trials[1].values == [0.2, 400]
    assert reconcile(run_dir, journal_study(run_dir), SCHEMA, OBJECTIVES).finished == 4  # idempotent


def test_dedupe_keeps_the_first_row_of_each_trial_number_and_rows_without_one():
    rows = [{"trial": 0, "eer": 0.1}, {"trial": 1}, {"trial": 0, "eer": 0.9}, {"trial": None}, {"trial": None}]
    assert dedupe_rows(rows) == [{"trial": 0, "eer": 0.1}, {"trial": 1}, {"trial": None}, {"trial": None}]


def test_partial_writes_of_a_killed_driver_are_dropped(tmp_path):
    run_dir = RunDirectory(tmp_path)
    (tmp_path / "trials.jsonl").write_text('{"trial": 0}\n{"trial": 1, "ee')
    (tmp_path / "study.journal").write_text('{"op": 0}\n{"op"')
    os.symlink(tmp_path / "study.journal", tmp_path / "study.journal.lock")
    assert sorted(run_dir.drop_partial_writes()) == ["study.journal", "study.journal.lock", "trials.jsonl"]
    assert run_dir.read_trials() == [{"trial": 0}]
    assert (tmp_path / "study.journal").read_text() == '{"op": 0}\n'
    assert run_dir.drop_partial_writes() == []


def test_resume_rejects_a_new_config(tmp_path, capsys):
    assert main(["run", "configs/demo.yaml", "--resume", str(tmp_path), "--trials", "3"]) == 2
    assert "drop CONFIG, --trials" in capsys.readouterr().err


def _resume(run_path, log, env) -> None:
    """`search run --resume` of the run in its own process session, which must end successfully."""
    resumed = start_driver(["run", "--resume", str(run_path)], log, env)
    try:
        assert resumed.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        kill_session(resumed.pid)


def _tiny_study(run_path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(run_path / "study.journal"))
    return optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(backend))


def test_a_run_whose_driver_is_sigkilled_resumes_to_its_budget(tmp_path, tiny_cache_dir):
    budget = 5
    extra = f"search: {{trials: {budget}, workers: 2, retries: 0, keep_artifacts: all}}\n"
    config = write_config(tmp_path / "tiny.yaml", tiny_cache_dir, extra)
    hang = tmp_path / "hang"
    hang.touch()  # the candidates started after the first two hang in their workers
    env = {"ENGINE_TEST_HANG_FILE": str(hang), "ENGINE_TEST_HANG_AFTER": "2"}
    driver = start_driver(["run", str(config), "--out", str(tmp_path / "results")], tmp_path / "first.log", env)
    try:
        trials_file = lambda: next((tmp_path / "results").glob("*/trials.jsonl"), None)  # noqa: E731
        wait_for(lambda: trials_file() and len(trials_file().read_text().splitlines()) >= 2, 300, "two finished trials")
        wait_for(lambda: list(tmp_path.glob("hang.*")), 120, "a trial running when the driver dies")
    finally:
        kill_session(driver.pid)
    driver.wait()
    run_path = trials_file().parent
    before = RunDirectory(run_path).read_trials()
    stored = RunDirectory(run_path)
    kept_before = {trial: stored.read_artifact(trial) for trial in stored.artifact_trials()}
    hang.unlink()

    _resume(run_path, tmp_path / "resume.log", env)

    rows = RunDirectory(run_path).read_trials()
    numbers = [row["trial"] for row in rows]
    interrupted = [row for row in rows if row.get("error") == INTERRUPTED]
    assert interrupted and all(row["status"] == "failed" for row in interrupted)
    total = budget + len(interrupted)  # each interrupted trial ran again, in its place in the budget
    assert len(rows) == total and sorted(numbers) == list(range(total))  # none lost, none twice
    assert rows[: len(before)] == before  # completed trials kept as they were
    assert max(row["trial"] for row in before) < max(numbers)  # the study went on numbering
    study = _tiny_study(run_path)
    assert len(study.trials) == total and not [t for t in study.trials if t.state == TrialState.RUNNING]
    retried = {trial.user_attrs["retry_of"] for trial in study.trials if "retry_of" in trial.user_attrs}
    assert retried == {row["trial"] for row in interrupted}
    failed = {t.number for t in study.trials if t.state == TrialState.FAIL}
    assert failed == {row["trial"] for row in rows if row["status"] == "failed"}
    pareto = json.loads((run_path / "pareto.json").read_text())
    assert {m["trial"] for m in pareto["members"]} <= {row["trial"] for row in rows if row["status"] == "complete"}
    assert len((run_path / "hypervolume.csv").read_text().splitlines()) == total + 1
    finished = sorted(row["trial"] for row in rows if row["status"] != "failed")
    assert RunDirectory(run_path).artifact_trials() == finished  # an interrupted trial's model is dropped
    assert all(RunDirectory(run_path).read_artifact(row["trial"]) == kept_before[row["trial"]] for row in before)


def _knob_study(run_dir: RunDirectory, sampler) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir.study_journal)))
    return optuna.create_study(storage=storage, study_name="knobs", sampler=sampler, load_if_exists=True)


def _propose(study: optuna.Study, count: int) -> list[dict]:
    proposals = []
    for _ in range(count):
        trial = study.ask()
        for index in range(6):
            trial.suggest_categorical(f"bits.{index}", [2, 3, 4, 5, 6, 8])
        study.tell(trial, 1.0)
        proposals.append(trial.params)
    return proposals


def test_a_resumed_sampler_does_not_propose_the_first_candidates_again(tmp_path):
    run_dir = RunDirectory(tmp_path)
    first = _propose(_knob_study(run_dir, optuna.samplers.NSGAIISampler(seed=0)), 2)
    reseeded = _knob_study(run_dir, optuna.samplers.NSGAIISampler(seed=0))
    assert _propose(reseeded, 1) == first[:1]  # the bug: the same seed on the same journal repeats itself
    resumed = _knob_study(run_dir, optuna.samplers.NSGAIISampler(seed=resumed_seed(0, 3)))
    assert not any(proposal in first for proposal in _propose(resumed, 3))
    assert resumed_seed(0, 3) == resumed_seed(0, 3) != resumed_seed(0, 4)  # reproducible from the run directory


def test_interrupted_trials_are_enqueued_once_and_retries_are_not_retried(tmp_path):
    run_dir = RunDirectory(tmp_path)
    study = journal_study(run_dir)
    for bits in (8, 4):
        study.enqueue_trial({"bits.a": bits})
    trials = [study.ask() for _ in range(2)]
    for trial in trials:
        trial.suggest_categorical("bits.a", [2, 4, 8])
    study.tell(trials[0], [0.1, 800])
    run_dir.rewrite_trials([SCHEMA.finished(0, {"bits.a": 8}, {"eer": 0.1, "size_bytes": 800})])
    reconcile(run_dir, study, SCHEMA, OBJECTIVES)  # trial 1 was running: recorded interrupted
    assert retry_interrupted(study, run_dir.read_trials()) == [1]
    assert retry_interrupted(study, run_dir.read_trials()) == []  # once
    retry = study.ask()
    assert retry.suggest_categorical("bits.a", [2, 4, 8]) == 4 and retry.user_attrs == {"retry_of": 1}
    study.tell(retry, state=TrialState.FAIL)
    rows = [*run_dir.read_trials(), SCHEMA.failed(2, {"bits.a": 4}, INTERRUPTED)]
    assert retry_interrupted(study, rows) == []  # a retry that was interrupted again is not retried


def test_sigterm_stops_cleanly_and_the_resume_retries_the_interrupted_candidate(tmp_path, tiny_cache_dir):
    budget = 4
    extra = f"search: {{trials: {budget}, workers: 2, retries: 0}}\n"
    config = write_config(tmp_path / "tiny.yaml", tiny_cache_dir, extra)
    hang = tmp_path / "hang"
    hang.touch()  # the candidates started after the first hang in their workers
    env = {"ENGINE_TEST_HANG_FILE": str(hang), "ENGINE_TEST_HANG_AFTER": "1"}
    log = tmp_path / "first.log"
    driver = start_driver(["run", str(config), "--out", str(tmp_path / "results")], log, env)
    try:
        trials_file = lambda: next((tmp_path / "results").glob("*/trials.jsonl"), None)  # noqa: E731
        wait_for(lambda: trials_file() and len(trials_file().read_text().splitlines()) >= 1, 300, "a finished trial")
        wait_for(lambda: list(tmp_path.glob("hang.*")), 120, "a trial running when SIGTERM arrives")
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(timeout=120) == 130
    finally:
        kill_session(driver.pid)
    output = log.read_text()
    assert "continue with `search run --resume" in output
    assert "SIGTERM received" not in output and "Stack trace" not in output and "Traceback" not in output
    run_path = trials_file().parent
    interrupted = [row for row in RunDirectory(run_path).read_trials() if row.get("error") == INTERRUPTED]
    assert interrupted  # recorded when the driver stopped, not only on resume
    hang.unlink()

    _resume(run_path, tmp_path / "resume.log", env)
    study = _tiny_study(run_path)
    retries = {trial.user_attrs["retry_of"]: trial for trial in study.trials if "retry_of" in trial.user_attrs}
    assert set(retries) == {row["trial"] for row in interrupted}
    by_number = {trial.number: trial for trial in study.trials}
    assert all(retry.params == by_number[number].params for number, retry in retries.items())
    assert len(RunDirectory(run_path).read_trials()) == budget + len(interrupted)


def test_a_resume_after_the_space_changed_names_the_knob_and_trials_and_writes_nothing(tiny, tmp_path, capsys):
    _, run_dir = tiny
    copy = shutil.copytree(run_dir.path, tmp_path / "run")
    config = yaml.safe_load((copy / "config.yaml").read_text())
    assert 2 in config["space"]["bits"]
    config["space"]["bits"] = [bits for bits in config["space"]["bits"] if bits != 2]
    config["space"]["baselines"] = [8]
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    assert main(["run", "--resume", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "the space changed since trials [" in error and "=2: not among the choices [4, 8]" in error
    assert "Traceback" not in error
    assert {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()} == before
