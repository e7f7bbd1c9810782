"""The Python API: `load_run` and `run` give the trials, front and reference as pandas objects."""

import json
import shutil

import pandas as pd
import pytest

import search
from search import load_run, run
from search.front import write_front_files
from search.run_dir import RunDirectory, RunDirectoryError
from spaces.bundle import CONFIG_FILE
from tiny_config import tiny_config
from tiny_run import FAILED_TRIAL, TRIAL_BITS


@pytest.fixture(scope="module")
def opened(tiny, tmp_path_factory):
    """The session's tiny run, copied (the tests write into it) with the hypervolume a search records."""
    config, shared = tiny
    copy = RunDirectory(shutil.copytree(shared.path, tmp_path_factory.mktemp("api") / shared.path.name))
    write_front_files(copy, config.objectives, copy.read_reference())
    return load_run(copy.path)


def test_the_api_is_exported_from_the_package_lazily():
    assert search.run is run and search.load_run is load_run and {"run", "load_run", "Run"} <= set(search.__all__)


def test_trials_are_a_table_indexed_by_trial_number_that_marks_the_front(opened, tiny):
    config, run_dir = tiny
    trials = opened.trials
    assert isinstance(trials, pd.DataFrame) and trials.index.name == "trial"
    assert sorted(trials.index) == sorted([*TRIAL_BITS, FAILED_TRIAL])
    assert trials.loc[FAILED_TRIAL, "status"] == "failed" and not trials.loc[FAILED_TRIAL, "on_front"]
    recorded = {row["trial"]: row for row in run_dir.read_trials()}
    assert (trials["eer"].dropna() == pd.Series({n: r["eer"] for n, r in recorded.items() if "eer" in r})).all()
    front = opened.front
    assert set(front.index) == set(trials.index[trials["on_front"]]) and len(front) >= 1
    members = run_dir.read_pareto()["members"]
    assert sorted(front.index) == sorted(member["trial"] for member in members)
    assert opened.objectives == config.objectives


def test_the_reference_row_is_the_fp32_teacher_s(opened, tiny):
    reference = opened.reference
    assert isinstance(reference, pd.Series) and reference["trial"] == "fp32"
    assert reference["size_bytes"] == tiny[1].read_reference()["size_bytes"] > opened.trials["size_bytes"].max()


def test_export_writes_the_bundle_of_a_trial(opened, tmp_path):
    exported = opened.export(0, out=tmp_path / "bundle", progress=False)
    config = json.loads((tmp_path / "bundle" / CONFIG_FILE).read_text())
    assert exported.trial == 0 and config["size_bytes"] == opened.trials.loc[0, "size_bytes"] == exported.size_bytes


def test_report_prints_the_front_and_writes_the_page(opened, capsys):
    page = opened.report()
    assert page == opened.path / "report.html" and page.stat().st_size > 0
    assert "fp32" in capsys.readouterr().out
    assert repr(opened).startswith(f"Run({str(opened.path)!r}, task='verification', trials=")


def test_load_run_of_a_folder_that_is_not_a_run_names_it(tmp_path):
    with pytest.raises(RunDirectoryError, match=str(tmp_path)):
        load_run(tmp_path)


def test_two_runs_in_one_process_each_finish_and_leave_ray_as_they_found_it(tmp_path, tiny_cache_dir, single_thread):
    """A notebook calls `run` again and again: Ray is started and shut down around each search
    (or, when the process already runs Ray, used and left running)."""
    import ray

    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_config(tiny_cache_dir, "{bits: [4, 8], baselines: [8]}", "search: {trials: 1, workers: 1}\n"))
    ray_was_up = ray.is_initialized()
    runs = []
    for seed in (1, 2):
        runs.append(run(path, overrides={"seed": seed}, out=tmp_path / "results", progress=False))
        assert ray.is_initialized() == ray_was_up
    assert len({finished.path for finished in runs}) == 2
    for finished in runs:
        assert len(finished.trials) == 1 and (finished.trials["status"] == "complete").all()
        assert finished.trials["on_front"].any() and load_run(finished.path).config == finished.config
