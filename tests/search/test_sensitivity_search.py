"""`search sensitivity`, its cache, and real searches with the `ilp` and `predictor-screened` samplers."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from evaluators.sensitivity_estimators import get_estimator
from search.candidate_sequences import ilp_candidates
from search.cli import main
from search.config import load_config
from search.engine import run_search
from search.run_dir import RunDirectory
from search.sensitivity_tables import AllocationSource, run_sensitivity
from search.tasks import get_task
from tiny_config import tiny_config


def searched(path, sampler: str, trials: int):
    """The tiny config searched by `sampler` for `trials` trials, one at a time."""
    overrides = {"search.trials": trials, "search.workers": 1, "search.population_size": 3, "search.sampler": sampler}
    return load_config(path, overrides)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_cache_dir, single_thread):
    """The tiny config (per-stage 2/4/8 bits), its prepared teacher, and the command's saved table."""
    root = tmp_path_factory.mktemp("sensitivity")
    path = root / "tiny.yaml"
    path.write_text(tiny_config(tiny_cache_dir))
    out = root / "table.json"
    assert main(["sensitivity", str(path), "--estimator", "hessian", "--out", str(out)]) == 0
    config = load_config(path)
    task = get_task(config.task)
    return path, config, task.evaluator().prepare(task.setup(config)), json.loads(out.read_text())


def test_the_command_saves_every_layers_damage_per_choice(tiny, capsys):
    _, _, prepared, saved = tiny
    assert saved["estimator"] == "hessian" and saved["settings"]["probes"] == 4
    assert list(saved["layers"]) == list(prepared.space.layers)
    for layer in saved["layers"].values():
        damage = layer["damage"]
        assert set(damage) == {"uniform:2", "uniform:4", "uniform:8"}
        assert damage["uniform:2"] >= damage["uniform:4"] >= damage["uniform:8"] >= 0


def test_a_table_is_cached_per_teacher_and_reused_by_other_seeds(tiny, monkeypatch):
    _, config, prepared, saved = tiny
    monkeypatch.setattr("evaluators.sensitivity_estimators.hutchinson_traces", lambda *a, **k: pytest.fail("recomputed"))
    table = run_sensitivity(replace(config, seed=config.seed + 1), prepared, get_estimator("hessian")).table
    assert table.to_entry()["layers"] == saved["layers"]


def test_the_config_selects_the_estimator_the_samplers_table_comes_from(tiny, tmp_path):
    path, _, prepared, _ = tiny
    config = load_config(path, {"search.sensitivity": {"estimator": "loss-increase", "batch_size": 16}})
    AllocationSource(config, prepared, run_dir=RunDirectory(tmp_path))()
    recorded = RunDirectory(tmp_path).read_sensitivity()
    assert recorded["estimator"] == "loss-increase" and recorded["settings"]["batch_size"] == 16
    assert recorded["cache_entry"] in {entry.name for entry in Path(config.cache_dir).glob("sensitivity-*.pt")}


def test_the_ilp_sampler_evaluates_the_predicted_front_in_order(tiny, tmp_path, ray_session):
    path, config, prepared, saved = tiny
    front = ilp_candidates(prepared.space, AllocationSource(config, prepared)())
    assert len(front) >= 3
    run = searched(path, "ilp", 3)
    outcome = run_search(run, RunDirectory.create(tmp_path / "results", run.name))
    rows = sorted(outcome.trials, key=lambda row: row["trial"])
    assert [row["status"] for row in rows] == ["complete"] * 3
    assert [prepared.space.candidate_from_row(row) for row in rows] == front[:3]
    recorded = outcome.run_dir.read_sensitivity()  # the table the sampler read, which the report draws
    assert recorded["estimator"] == "hessian" and recorded["layers"] == saved["layers"]
    page = outcome.run_dir.report_html.read_text(encoding="utf-8")
    assert all(f'"{layer}"' in page for layer in saved["layers"])


def test_the_screened_sampler_starts_from_the_front_then_proposes_new_candidates(tiny, tmp_path, ray_session):
    path, _, prepared, _ = tiny
    run = searched(path, "predictor-screened", 5)
    outcome = run_search(run, RunDirectory.create(tmp_path / "results", run.name))
    rows = sorted(outcome.trials, key=lambda row: row["trial"])
    assert [row["status"] for row in rows] == ["complete"] * 5
    candidates = [prepared.space.candidate_from_row(row) for row in rows]
    first = ilp_candidates(prepared.space, AllocationSource(run, prepared)())
    assert all(candidate in first for candidate in candidates[:3])
    assert len({json.dumps(candidate, sort_keys=True) for candidate in candidates}) == 5  # screening never repeats
