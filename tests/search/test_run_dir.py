import csv
import shutil
from pathlib import Path

import pytest

from search import run_dir as run_dir_module
from search.cli import main
from search.run_dir import RunDirectory, RunDirectoryError


def test_create_makes_unique_named_folders(tmp_path):
    first = RunDirectory.create(tmp_path, "demo")
    second = RunDirectory.create(tmp_path, "demo")
    assert first.path != second.path and first.path.name.startswith("demo-")


def test_trials_persist_as_jsonl_and_csv(tmp_path):
    run = RunDirectory.create(tmp_path, "t")
    run.append_trial({"trial": 0, "status": "complete", "bits.stem": 4, "eer": 0.05, "error": "", "seconds": 1.0})
    run.append_trial({"trial": 1, "status": "failed", "bits.stem": 2, "eer": float("nan"), "error": "boom", "seconds": None})
    rows = run.read_trials()
    assert [row["trial"] for row in rows] == [0, 1]
    assert rows[1]["eer"] is None
    with open(run.path / "trials.csv") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == ["trial", "status", "bits.stem", "eer", "error", "seconds"]
    assert table[1]["error"] == "boom"


def test_corrupt_trials_file_names_line(tmp_path):
    run = RunDirectory.create(tmp_path, "t")
    (run.path / "trials.jsonl").write_text('{"trial": 0}\n{oops\n')
    with pytest.raises(RunDirectoryError, match="line 2 is corrupt"):
        run.read_trials()


def test_hypervolume_round_trip(tmp_path):
    run = RunDirectory.create(tmp_path, "t")
    run.write_hypervolume([0.0, 0.5, 0.75])
    assert run.read_hypervolume() == [0.0, 0.5, 0.75]


def test_a_half_written_last_line_is_ignored_with_a_warning(tmp_path, caplog):
    run = RunDirectory.create(tmp_path, "t")
    (run.path / "trials.jsonl").write_text('{"trial": 0}\n{"trial": 1, "ee')
    with caplog.at_level("WARNING"):
        assert run.read_trials() == [{"trial": 0}]
    assert "half-written last line" in caplog.text


CORRUPT_RUNS = {
    "a file given as the run": (lambda root: (root / "run").write_text("not a folder"), "a file, not a run directory"),
    "a missing run": (lambda root: None, "no such run directory"),
    "a folder without a run": (lambda root: (root / "run").mkdir(), "not a run directory (no config.yaml)"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_RUNS))
@pytest.mark.parametrize("command", [["report"], ["export", "--trial", "0"], ["run", "--resume"]])
def test_every_read_path_turns_a_bad_run_directory_into_one_line(tmp_path, capsys, case, command):
    make, message = CORRUPT_RUNS[case]
    make(tmp_path)
    run = str(tmp_path / "run")
    argv = [*command, run] if command != ["export", "--trial", "0"] else ["export", run, "--trial", "0"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and message in error and "Traceback" not in error


def test_resume_of_a_read_only_run_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    run = RunDirectory.create(tmp_path, "t")
    (run.path / "config.yaml").write_text("name: t\n")
    before = {path.name: path.read_bytes() for path in run.path.iterdir()}
    # As root (CI), folder permissions never stop a write: a read-only mount is what would, so
    # the folder's writability is what is reported unwritable here.
    monkeypatch.setattr(run_dir_module.os, "access", lambda path, mode: Path(path) != run.path)
    assert main(["run", "--resume", str(run.path)]) == 2
    assert "not writable; a resume records trials here" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in run.path.iterdir()} == before


def test_export_to_an_existing_file_is_refused(tiny, tmp_path, capsys):
    _, run_dir = tiny
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(["export", str(run_dir.path), "--trial", "0", "--out", str(target)]) == 2
    assert "a file; --out names the bundle folder" in capsys.readouterr().err and target.read_text() == "mine"


def test_a_front_listing_trials_the_run_does_not_record_is_named_not_reported(tiny, tmp_path, capsys):
    _, run_dir = tiny
    copy = RunDirectory(shutil.copytree(run_dir.path, tmp_path / "run"))
    (copy.path / "trials.jsonl").write_text("")
    assert main(["report", str(copy.path)]) == 2
    error = capsys.readouterr().err
    assert "that trials.jsonl does not record" in error and "0 trials" not in error
