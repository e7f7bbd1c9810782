"""Promotion decisions of the multi-objective successive-halving scheduler, without Ray."""

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from search.constraints import parse_constraints
from search.pareto import Objective
from search.scheduler import ParetoHalving, ParetoHalvingScheduler
from search.tasks import TASKS

OBJECTIVES = (Objective("eer", "min"), Objective("size_bytes", "min"))

# Rung-0 results: a front A-B-C from accurate/large to less accurate/smaller, and two dominated ones.
EARLIER = {
    "A": {"eer": 0.05, "size_bytes": 500},
    "B": {"eer": 0.06, "size_bytes": 400},
    "C": {"eer": 0.07, "size_bytes": 300},
    "D": {"eer": 0.08, "size_bytes": 350},
    "E": {"eer": 0.09, "size_bytes": 450},
}


def halving_after_earlier(**kwargs) -> ParetoHalving:
    halving = ParetoHalving(OBJECTIVES, rungs=3, reduction_factor=3, **kwargs)
    for trial_id, metrics in EARLIER.items():
        halving.record(trial_id, 0, metrics)
    return halving


def test_the_smallest_model_is_promoted_where_one_metric_halving_would_stop_it():
    smallest = {"eer": 0.20, "size_bytes": 50}
    by_eer = sorted([*EARLIER.values(), smallest], key=lambda m: m["eer"])
    assert by_eer.index(smallest) >= 2  # outside the best third by EER: one-metric ASHA stops it
    assert halving_after_earlier().record("F", 0, smallest)


def test_a_dominated_newcomer_is_stopped():
    assert not halving_after_earlier().record("G", 0, {"eer": 0.10, "size_bytes": 600})


def test_first_arrivals_and_the_last_rung_always_go_on():
    halving = ParetoHalving(OBJECTIVES, rungs=2, reduction_factor=3)
    assert halving.record("a", 0, {"eer": 0.5, "size_bytes": 900})
    assert not halving.record("b", 0, {"eer": 0.6, "size_bytes": 950})  # dominated, quota 1 taken
    assert halving.record("b", 1, {"eer": 0.6, "size_bytes": 950})  # the last rung: nothing to decide
    assert halving.results_per_rung() == [2, 0]


def test_about_one_in_reduction_factor_is_promoted_on_a_chain_of_dominated_results():
    halving = ParetoHalving(OBJECTIVES, rungs=2, reduction_factor=3)
    decisions = [halving.record(str(i), 0, {"eer": 0.1 * (9 - i), "size_bytes": 100 * (9 - i)}) for i in range(9)]
    assert all(decisions)  # each newcomer dominates every earlier one: always in the best third
    halving = ParetoHalving(OBJECTIVES, rungs=2, reduction_factor=3)
    decisions = [halving.record(str(i), 0, {"eer": 0.1 * (i + 1), "size_bytes": 100 * (i + 1)}) for i in range(9)]
    assert decisions == [True, False, False, False, False, False, False, False, False]


def test_infeasible_results_rank_after_feasible_ones():
    constraints = parse_constraints(["size_bytes <= 320"], TASKS["verification"].metric_names(["cortex-a72"]))
    halving = halving_after_earlier(constraints=constraints)
    assert not halving.record("H", 0, {"eer": 0.01, "size_bytes": 1000})  # best EER, but too large
    assert halving.ranking(0)[:1] == ["C"]  # the only feasible one
    assert halving.ranking(0)[-1] == "H"  # violates the most


def test_bad_ladders_are_rejected():
    with pytest.raises(ValueError, match="at least one rung"):
        ParetoHalving(OBJECTIVES, rungs=0)
    with pytest.raises(ValueError, match="rung 2 outside the ladder of 2 rungs"):
        ParetoHalving(OBJECTIVES, rungs=2).record("x", 2, {})


def test_ray_scheduler_turns_decisions_into_continue_and_stop():
    scheduler = ParetoHalvingScheduler(ParetoHalving(OBJECTIVES, rungs=2, reduction_factor=2))
    first, second, other = (SimpleNamespace(trial_id=name) for name in ("t1", "t2", "t3"))
    assert scheduler.on_trial_result(None, first, {"rung": 0, "eer": 0.1, "size_bytes": 10}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, second, {"rung": 0, "eer": 0.2, "size_bytes": 5}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, other, {"rung": 0, "eer": 0.3, "size_bytes": 30}) == TrialScheduler.STOP
    no_rung = {"eer": 0.3}  # not a fidelity-ladder report
    assert scheduler.on_trial_result(None, other, no_rung) == TrialScheduler.CONTINUE
    assert "[3, 0]" in scheduler.debug_string()
