import re

import pytest

from search.pareto import Objective
from search.resolution import EXACT
from search.selection import Condition, Selection, SelectionError, knee_index

METRICS = ["eer", "min_dcf", "size_bytes", "compression_ratio", "latency_ms", "latency_ms@cortex-a53"]
OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min")]


def _row(trial, eer, size, status="complete", **extra):
    return {"trial": trial, "status": status, "eer": eer, "size_bytes": size, "compression_ratio": 1e6 / size, **extra}


ROWS = [
    _row(0, 0.050, 900_000),  # best EER, largest
    _row(1, 0.052, 500_000),  # knee: nearly the best EER at about half the size
    _row(2, 0.200, 300_000),
    _row(3, 0.300, 100_000),  # smallest, poor
    _row(4, 0.060, 600_000),  # dominated by trial 1
    {"trial": 5, "status": "failed", "error": "boom"},
    _row(6, 0.001, 50_000, status="stopped"),  # not completed: never a candidate
]


def test_parses_goal_metric_and_conditions():
    selection = Selection.parse("min eer where size_bytes <= 500_000 and latency_ms@cortex-a53 < 2e1", METRICS)
    assert (selection.goal, selection.metric) == ("min", "eer")
    assert selection.conditions == (Condition("size_bytes", "<=", 500_000.0), Condition("latency_ms@cortex-a53", "<", 20.0))
    assert Selection.parse("  knee  ", METRICS).conditions == ()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("min eer", 0),
        ("min eer where size_bytes <= 500000", 1),
        ("min eer where size_bytes < 500000", 2),
        ("max compression_ratio where eer <= 0.08", 1),
        ("min size_bytes", 3),
        ("max eer where size_bytes != 100000", 2),
        ("knee", 1),  # scaled distances to the ideal point: 0 -> 1.0, 1 -> 0.5, 2 -> 0.65, 3 -> 1.0
        ("knee where eer >= 0.051", 2),  # front {1, 2, 3}: 1 -> 1.0, 2 -> 0.78, 3 -> 1.0
    ],
)
def test_chooses_among_completed_trials(text, expected):
    assert Selection.parse(text, METRICS).choose(ROWS, OBJECTIVES)["trial"] == expected


def test_ties_go_to_the_objectives_then_the_lower_trial():
    rows = [_row(3, 0.05, 200.0), _row(1, 0.05, 100.0), _row(2, 0.05, 100.0)]
    assert Selection.parse("min eer", METRICS).choose(rows, OBJECTIVES)["trial"] == 1


# The case: front members within 0.02 ms of one another. Rescaled to [0, 1], that spread
# weighed as much as the size spread and made the 8-bit model (trial 1, the fastest) the knee.
LATENCY_OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]
NEAR_EQUAL_LATENCIES = [
    _row(0, 0.0760, 80_000, latency_ms=3.151),  # smallest, worst EER
    _row(1, 0.0721, 125_000, latency_ms=3.141),  # 8-bit
    _row(2, 0.0730, 90_000, latency_ms=3.161),  # 4-bit
    _row(3, 0.0700, 180_000, latency_ms=3.151),  # best EER, largest
]


def test_a_latency_spread_below_its_resolution_does_not_pick_the_knee():
    exact = [Objective(o.metric, o.direction, EXACT) for o in LATENCY_OBJECTIVES]
    assert NEAR_EQUAL_LATENCIES[knee_index(NEAR_EQUAL_LATENCIES, exact)]["trial"] == 1
    assert NEAR_EQUAL_LATENCIES[knee_index(NEAR_EQUAL_LATENCIES, LATENCY_OBJECTIVES)]["trial"] == 2
    assert Selection.parse("knee", METRICS).choose(NEAR_EQUAL_LATENCIES, LATENCY_OBJECTIVES)["trial"] == 2


def test_the_knee_counts_only_the_part_of_a_spread_beyond_the_resolution():
    # The latency resolution (10% by default) of the fastest 3.0 ms is 0.3 ms. Trial 1 is 0.33 ms
    # slower: only 0.03 ms of that counts, so its balanced EER and size make it the knee. Counted
    # in full, the slowest member's latency weighs as much as the whole EER spread and trial 0 wins.
    rows = [
        _row(0, 0.050, 200_000, latency_ms=3.0),
        _row(1, 0.060, 120_000, latency_ms=3.33),
        _row(2, 0.100, 90_000, latency_ms=3.1),
    ]
    exact = [Objective(o.metric, o.direction, EXACT) for o in LATENCY_OBJECTIVES]
    assert knee_index(rows, exact) == 0
    assert knee_index(rows, LATENCY_OBJECTIVES) == 1


def test_knee_scales_objectives_to_the_front_range():
    # In raw units size dominates every distance; scaled to the front, trial 1 is the balanced one.
    rows = [_row(0, 0.10, 1_000.0), _row(1, 0.02, 2_000.0), _row(2, 0.01, 100_000.0)]
    assert knee_index(rows, OBJECTIVES) == 1
    assert knee_index(rows[:1], OBJECTIVES) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a goal"),
        ("best eer", "expected 'knee', 'min' or 'max' at the start, got 'best'"),
        ("min", "expected a metric name, got the end"),
        ("min eerr", "unknown metric 'eerr'; known: eer, min_dcf"),
        ("min eer size_bytes <= 3", "expected 'where' after 'min eer', got 'size_bytes'"),
        ("min eer where", "expected a metric name, got the end"),
        ("min eer where size_bytes", "expected a comparison"),
        ("min eer where size_bytes <= lots", "expected a number after 'size_bytes <=', got 'lots'"),
        ("min eer where size_bytes <= 5 or eer < 1", "expected 'and' between conditions, got 'or'"),
        ("knee where eer ~ 4", "unexpected '~' at character 16"),
    ],
)
def test_invalid_selections_are_clear_errors(text, message):
    with pytest.raises(SelectionError, match=re.escape(message)) as error:
        Selection.parse(text, METRICS)
    assert str(error.value).startswith(f"selection {text!r}: ")


def test_no_trial_satisfying_the_conditions_names_the_closest():
    with pytest.raises(SelectionError, match=r"no completed trial satisfies size_bytes <= 1000 \(closest: size_bytes = 100000\)"):
        Selection.parse("min eer where size_bytes <= 1000", METRICS).choose(ROWS, OBJECTIVES)
