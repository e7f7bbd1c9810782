"""One real, small Ray Tune search end to end, checking every file of the run directory."""

import json
import math
import sys

import ray.cloudpickle as cloudpickle
import optuna
import pytest
import yaml

from evaluators.verification import VerificationEvaluator
from search.cli import main
from search.config import load_config
from search.engine import SearchOutcome, front_members
from search.artifacts import read_artifact
from search.pareto import Objective, pareto_front
from search.run_dir import RunDirectory
from spaces.space import SearchSpace
from tiny_config import tiny_config

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class FailingSpace(SearchSpace):
    """Fails every candidate with a 2-bit stem, so the search must record a failure and go on."""

    def layer_bits(self, candidate):
        if candidate["bits.stem"] == 2:
            raise ValueError("injected failure for bits.stem=2")
        return super().layer_bits(candidate)


class FailingEvaluator(VerificationEvaluator):
    """The verification evaluator over a `FailingSpace`, counting the ladders run in this process."""

    ladders_here = 0
    """Fidelity ladders run in the test's process (the driver); the workers count in their own copies."""

    def prepare(self, setup, progress=None):
        prepared = super().prepare(setup, progress)
        prepared.space = FailingSpace(prepared.space.config, {k[5:]: v for k, v in prepared.space.groups.items()})
        return prepared

    def evaluate_ladder(self, candidate, prepared):
        type(self).ladders_here += 1
        yield from super().evaluate_ladder(candidate, prepared)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("search")
    config_path = root / "tiny.yaml"
    search = "search: {trials: 5, workers: 2, population_size: 4}\n"
    config_path.write_text(tiny_config(root / "cache", "{bits: [2, 4, 8], baselines: [8, 2]}", search))
    config = load_config(config_path)
    # through the CLI, so the live display (which holds locks Ray must not pickle) is used
    assert main(["run", str(config_path), "--out", str(root / "results")], FailingEvaluator()) == 0
    (run_path,) = (root / "results").iterdir()
    run_dir = RunDirectory(run_path)
    trials = run_dir.read_trials()
    return config, SearchOutcome(run_dir, run_dir.read_reference(), trials, front_members(trials, config.objectives))


def test_every_trial_is_recorded_with_knobs_metrics_and_status(finished_run):
    config, outcome = finished_run
    rows = outcome.run_dir.read_trials()
    assert len(rows) == config.search.trials
    assert sorted(row["trial"] for row in rows) == list(range(config.search.trials))
    failed = [row for row in rows if row["status"] == "failed"]
    complete = [row for row in rows if row["status"] == "complete"]
    assert failed and all("injected failure for bits.stem=2" in row["error"] for row in failed)
    assert len(complete) >= 2
    for row in complete:
        assert 0.0 <= row["eer"] <= 1.0 and row["size_bytes"] > 0 and row["latency_ms"] > 0
        assert row["size_bytes"] < outcome.reference["size_bytes"]
    eight_bit = next(row for row in complete if all(row[k] == 8 for k in row if k.startswith("bits.")))
    assert math.isclose(eight_bit["compression_ratio"], outcome.reference["size_bytes"] / eight_bit["size_bytes"])
    header = (outcome.run_dir.path / "trials.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["trial", "status"] and "bits.stem" in header and "eer" in header and "error" in header


def test_pareto_json_is_the_non_dominated_set(finished_run):
    config, outcome = finished_run
    pareto = outcome.run_dir.read_pareto()
    complete = [row for row in outcome.run_dir.read_trials() if row["status"] == "complete"]
    expected = {complete[i]["trial"] for i in pareto_front(complete, config.objectives)}
    assert {member["trial"] for member in pareto["members"]} == expected
    assert pareto["reference"]["trial"] == "fp32"
    assert [Objective.parse(o) for o in pareto["objectives"]] == list(config.objectives)


def test_resolved_config_study_and_hypervolume_files(finished_run):
    config, outcome = finished_run
    saved = yaml.safe_load((outcome.run_dir.path / "config.yaml").read_text())
    assert saved["search"]["trials"] == config.search.trials and saved["space"]["bits"] == [2, 4, 8]
    reference = json.loads((outcome.run_dir.path / "reference.json").read_text())
    assert reference["status"] == "reference" and 0.0 <= reference["eer"] <= 1.0
    sessions = sorted(p.name for p in (outcome.run_dir.path / "tensorboard" / "hparams").iterdir() if p.is_dir())
    assert len(sessions) == config.search.trials
    projector = outcome.run_dir.path / "tensorboard" / "projector"
    assert (projector / "projector_config.pbtxt").is_file()
    (tensors,) = projector.rglob("tensors.tsv")
    assert len(tensors.read_text().splitlines()) == 4 * 4  # test speakers x utterances
    history = outcome.run_dir.read_hypervolume()
    assert len(history) == config.search.trials
    assert all(later >= earlier for earlier, later in zip(history, history[1:]))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(outcome.run_dir.study_journal)))
    study = optuna.load_study(study_name=config.name, storage=storage)
    states = [trial.state for trial in study.trials]
    assert len(states) == config.search.trials
    assert states.count(optuna.trial.TrialState.FAIL) == sum(1 for r in outcome.trials if r["status"] == "failed")


def test_workers_models_reach_the_run_for_the_front_and_the_projector_reads_them(finished_run):
    _, outcome = finished_run
    run_dir = outcome.run_dir
    assert run_dir.artifact_trials() == sorted(row["trial"] for row in outcome.front)  # keep_artifacts: front
    for row in outcome.front:
        artifact = read_artifact(run_dir, row["trial"])
        assert len(artifact.packed) == row["size_bytes"] and artifact.steps == row["steps"] == 0
        assert artifact.candidate == {key: row[key] for key in artifact.candidate} and artifact.rebuild()
    assert FailingEvaluator.ladders_here == 0  # the driver measured no candidate, the projector included


def test_report_command_prints_front_with_reference(finished_run, capsys):
    _, outcome = finished_run
    assert main(["report", str(outcome.run_dir.path)]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "Pareto front" in out
