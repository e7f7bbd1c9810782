"""A candidate measured before is reported from its first measurement, not evaluated again."""

from search.config import load_config
from search.engine import run_search
from search.reuse import MeasuredCandidates
from search.run_dir import RunDirectory
from search.trial import REUSED_FROM, RUNG
from tiny_config import tiny_config


def test_a_candidate_is_reused_only_once_measured_through_the_last_rung():
    measured = MeasuredCandidates(rungs=2)
    measured.record({"bits.a": 4}, 0, {"eer": 0.3, RUNG: 0})
    assert measured.lookup({"bits.a": 4, "trial_number": 9}) is None  # stopped below the last rung so far
    measured.record({"bits.a": 4}, 0, {"eer": 0.2, RUNG: 1})
    measured.record({"bits.a": 4}, 5, {"eer": 0.9, RUNG: 1})  # a later trial of the same candidate: not the source
    assert measured.lookup({"trial_number": 9, "bits.a": 4}) == {
        "trial": 0,
        "rungs": [{"eer": 0.3, RUNG: 0}, {"eer": 0.2, RUNG: 1}],
    }
    assert measured.lookup({"bits.a": 8}) is None


def test_completed_rows_of_a_run_directory_are_known_measurements():
    rows = [
        {"trial": 0, "status": "complete", "bits.a": 4, "eer": 0.2, "steps": 0},
        {"trial": 1, "status": "failed", "bits.a": 8},
        {"trial": 2, "status": "complete", "bits.a": 4, "eer": 0.2, "steps": 0, REUSED_FROM: 0},
    ]
    measured = MeasuredCandidates.from_rows(rows, 1, ["eer"], lambda row: {"bits.a": row["bits.a"]})
    assert measured.lookup({"bits.a": 4})["trial"] == 0 and measured.lookup({"bits.a": 8}) is None


def test_a_search_that_repeats_candidates_measures_each_once(tmp_path, tiny_cache_dir, ray_session):
    """Two candidates and six trials: the sampler must repeat itself, and every repeat is a replay."""
    search = "search: {trials: 6, workers: 1, sampler: random}\n"
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_config(tiny_cache_dir, "{knobs: [{name: bits.all, layers: [\"*\"], bits: [4, 8]}]}", search))
    config = load_config(path)
    outcome = run_search(config, RunDirectory.create(tmp_path / "results", config.name))
    rows = [row for row in outcome.trials if row["status"] == "complete"]
    (knob,) = [key for key in rows[0] if key.startswith("bits.")]
    first = {}
    for row in rows:
        source = first.setdefault(row[knob], row)
        if source is row:
            assert REUSED_FROM not in row
        else:
            assert row[REUSED_FROM] == source["trial"] and row["eer"] == source["eer"]
            assert row["size_bytes"] == source["size_bytes"] and row["latency_ms"] == source["latency_ms"]
    assert len(first) <= 2 and len(rows) == 6 and sum(REUSED_FROM in row for row in rows) >= 4
