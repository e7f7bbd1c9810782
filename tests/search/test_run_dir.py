import csv

import pytest

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
