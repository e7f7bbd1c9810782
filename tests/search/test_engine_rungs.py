"""A trial's reports, one per rung of the fidelity ladder, measured without Ray."""

from dataclasses import replace

import pytest

from evaluators.evaluation import Evaluation
from search.trial import RUNG, STEPS, TrialContext, TrialFailure, measure_rungs
from spaces.compress import ModelSpec, compress

SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)


class LadderEvaluator:
    """Yields one evaluation per rung with the given EERs (a stand-in for fine-tuning)."""

    def __init__(self, eers):
        self.eers = eers

    def evaluate_ladder(self, candidate, prepared):
        compressed = compress(SPEC, SPEC.build().state_dict(), {})
        for steps, eer in zip((0, 10, 50), self.eers):
            yield steps, Evaluation({"eer": eer, "min_dcf": 0.5, "size_bytes": 1000.0}, compressed)


def context(eers) -> TrialContext:
    return TrialContext(None, ("cortex-a72",), 2000.0, 1, LadderEvaluator(eers))


def test_one_report_per_rung_with_its_steps_and_metrics():
    reports = list(measure_rungs({}, context([0.3, 0.2, 0.1])))
    assert [(r[RUNG], r[STEPS], r["eer"]) for r in reports] == [(0, 0, 0.3), (1, 10, 0.2), (2, 50, 0.1)]
    assert all(r["compression_ratio"] == 2.0 and r["latency_ms@cortex-a72"] > 0 for r in reports)
    assert reports[0]["seconds"] <= reports[1]["seconds"] <= reports[2]["seconds"]


def test_a_nan_at_a_later_rung_fails_the_trial_after_the_earlier_reports():
    rungs = measure_rungs({}, context([0.3, float("nan")]))
    assert next(rungs)["eer"] == 0.3
    with pytest.raises(TrialFailure, match=r"non-finite metric\(s\) \['eer'\]"):
        next(rungs)


class RecordingKeeper:
    """Records the (trial, rung, steps) of every model a trial keeps."""

    def __init__(self):
        self.kept = []

    def keep(self, trial, rung, steps, candidate, prepared, evaluation):
        self.kept.append((trial, rung, steps))


def test_each_rung_is_kept_before_it_is_reported_and_a_failed_rung_is_not():
    keeper = RecordingKeeper()
    rungs = measure_rungs({}, replace(context([0.3, 0.2, float("nan")]), artifacts=keeper), trial_number=7)
    next(rungs)
    assert keeper.kept == [(7, 0, 0)]
    next(rungs)
    assert keeper.kept == [(7, 0, 0), (7, 1, 10)]
    with pytest.raises(TrialFailure):
        next(rungs)
    assert keeper.kept == [(7, 0, 0), (7, 1, 10)]
