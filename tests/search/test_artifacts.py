"""Trial artifacts: kept in the run directory, pruned to what the run keeps, and read by export and
verify instead of training the trial again."""

import shutil

import pytest

from evaluators.verification import VerificationEvaluator
from search.artifacts import KEEP_ALL, KEEP_FRONT, KEEP_NONE, prune_artifacts, read_artifact
from search.cli import main
from search.export import export_bundle
from search.run_dir import MissingArtifactError, RunDirectory, RunDirectoryError
from search.verify import verify_bundle
from spaces import load_bundle
from spaces.bundle import WEIGHTS_FILE

pytestmark = pytest.mark.usefixtures("single_thread")

ROWS = [
    {"trial": 0, "status": "complete"},
    {"trial": 1, "status": "stopped"},
    {"trial": 2, "status": "failed"},
    {"trial": 3, "status": "complete"},
    {"trial": 5, "status": "complete", "reused_from": 0},
]
"""Recorded trials; trial 4 still runs, trial 5 reused trial 0's measurement (and sent no model)."""


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything measures a candidate's fidelity ladder or the FP32 teacher again."""

    def refuse(*args, **kwargs):
        raise AssertionError("trained a model again instead of reading the run's files")

    monkeypatch.setattr(VerificationEvaluator, "evaluate_ladder", refuse)
    monkeypatch.setattr(VerificationEvaluator, "evaluate_reference", refuse)


@pytest.mark.parametrize(
    "keep, front, kept",
    [(KEEP_FRONT, [3], [3, 4]), (KEEP_FRONT, [3, 5], [0, 3, 4]), (KEEP_ALL, [3], [0, 1, 3, 4]), (KEEP_NONE, [3], [4])],
)
def test_pruning_keeps_the_front_every_finished_trial_or_none_and_spares_running_trials(tmp_path, keep, front, kept):
    run_dir = RunDirectory(tmp_path)
    for trial in range(5):
        run_dir.write_artifact(trial, {"trial": trial}, bytes([trial]))
    prune_artifacts(run_dir, ROWS, [row for row in ROWS if row["trial"] in front], keep)
    assert run_dir.artifact_trials() == kept


def test_an_interrupted_write_is_refused_and_its_leftovers_are_dropped(tmp_path):
    run_dir = RunDirectory(tmp_path)
    run_dir.write_artifact(7, {"rung": 0}, b"rung 0 weights")
    run_dir.write_artifact(7, {"rung": 1}, b"rung 1 weights")
    manifest, weights = run_dir.read_artifact(7)
    assert manifest["rung"] == 1 and weights == b"rung 1 weights" and manifest["size_bytes"] == len(weights)
    folder = run_dir.artifacts_dir / "trial-0007"
    (folder / "weights.bin").write_bytes(b"rung 2 weights")  # the writer stopped before the manifest
    with pytest.raises(RunDirectoryError, match="weights.bin does not match artifact.json"):
        run_dir.read_artifact(7)
    (folder / "artifact.json.tmp").write_text("{")
    assert run_dir.drop_partial_writes() == ["artifacts/trial-0007/artifact.json.tmp"]
    with pytest.raises(MissingArtifactError, match="trial 3 has no kept model"):
        run_dir.read_artifact(3)


def test_export_rebuilds_the_kept_model_without_training_it(tiny, tmp_path, no_training):
    _, run_dir = tiny
    row = next(row for row in run_dir.read_trials() if row["trial"] == 1)
    stages = []
    exported = export_bundle(run_dir.path, trial=1, out=tmp_path / "bundle", progress=lambda *stage: stages.append(stage))
    artifact = read_artifact(run_dir, 1)
    assert (exported.path / WEIGHTS_FILE).read_bytes() == artifact.packed
    assert load_bundle(exported.path).compressed.packed == artifact.rebuild().packed
    assert exported.metrics["eer"] == pytest.approx(row["eer"]) and exported.size_bytes == row["size_bytes"]
    assert stages[:2] == [("reading artifact", 0, 1), ("reading artifact", 1, 1)]
    names = [stage.split(" (")[0] for stage, _, _ in stages]  # the display's stage names
    assert names.index("measuring") < names.index("exporting ONNX") and stages[-1] == ("exporting ONNX", 1, 1)
    assert ("measuring", 2, 2) in stages


def test_a_trial_the_run_did_not_keep_is_a_clear_error(tiny, tmp_path, capsys):
    _, run_dir = tiny
    copy = RunDirectory(shutil.copytree(run_dir.path, tmp_path / "run"))
    copy.remove_artifact(1)
    assert main(["export", str(copy.path), "--trial", "1", "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err
    assert "trial 1: the run kept no model of it" in err and "export never retrains" in err
    assert "export a trial it kept [0, 2, 3]" in err and "search.keep_artifacts: all" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bundle").exists()


def test_verify_with_the_run_as_data_reads_its_files_without_training(tiny, bundle, no_training):
    _, run_dir = tiny
    assert verify_bundle(bundle, data=run_dir.path, timing_seconds=0.05).passed


def test_a_trial_that_reused_a_measurement_exports_the_model_it_reused(tiny, tmp_path):
    _, run_dir = tiny
    copy = RunDirectory(shutil.copytree(run_dir.path, tmp_path / "run"))
    measured = next(row for row in copy.read_trials() if row["trial"] == 1)
    copy.append_trial({**measured, "trial": 9, "reused_from": 1})
    exported = export_bundle(copy.path, trial=9, out=tmp_path / "bundle")
    assert exported.trial == 9 and (exported.path / WEIGHTS_FILE).read_bytes() == read_artifact(copy, 1).packed
