import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.pareto import (
    DIRECTIONS,
    Objective,
    crowding_distance,
    hypervolume,
    hypervolume_history,
    minimisation_values,
    non_dominated_ranks,
    normalized_points,
    pareto_front,
)
from search.resolution import COST_MODEL_RESOLUTION, EXACT, Resolution, beats

QUALITY_AND_SIZE = [Objective("quality", "max"), Objective("size", "min")]

# Front: 0, 1, 3 (a duplicate of 0) and 5. Row 2 is dominated by 0, row 4 by 1.
MIXED_ROWS = [
    {"quality": 0.90, "size": 10},
    {"quality": 0.80, "size": 5},
    {"quality": 0.85, "size": 12},
    {"quality": 0.90, "size": 10},
    {"quality": 0.70, "size": 5},
    {"quality": 0.95, "size": 20},
    {"size": 1},
    {"quality": float("nan"), "size": 1},
    {"quality": None, "size": 1},
]

EER_AND_SIZE = [Objective("eer", "min"), Objective("size", "min")]
TEACHER = {"eer": 0.02, "size": 100.0, "accuracy": 0.8}


@pytest.mark.parametrize(
    "item",
    ["eer:min", " eer : min ", ["eer", "min"], ("eer", "min"), {"metric": "eer", "direction": "min"}],
)
def test_objective_parse_accepts_config_forms(item):
    assert Objective.parse(item) == Objective("eer", "min")


def test_objective_parse_returns_objectives_unchanged():
    objective = Objective("size_bytes", "min")
    assert Objective.parse(objective) is objective


def test_objective_rejects_unknown_direction_by_name():
    with pytest.raises(ValueError, match="'eer'.*'minimise'"):
        Objective("eer", "minimise")
    with pytest.raises(ValueError, match="'lowest'"):
        Objective.parse("eer:lowest")


@pytest.mark.parametrize(
    "item", ["eer", ["eer"], {"metric": "eer"}, {"metric": "eer", "direction": "min", "x": 1}, 3]
)
def test_objective_parse_rejects_malformed_items(item):
    with pytest.raises(ValueError, match="objective"):
        Objective.parse(item)


def test_pareto_front_with_mixed_directions_keeps_duplicates_and_drops_missing():
    assert pareto_front(MIXED_ROWS, QUALITY_AND_SIZE) == [0, 1, 3, 5]


def test_pareto_front_direction_matters():
    flipped = [Objective("quality", "min"), Objective("size", "min")]
    assert pareto_front(MIXED_ROWS, flipped) == [4]


def test_pareto_front_of_empty_or_all_missing_rows_is_empty():
    assert pareto_front([], QUALITY_AND_SIZE) == []
    assert pareto_front([{"size": 1}], QUALITY_AND_SIZE) == []


def test_pareto_front_rejects_repeated_or_no_objectives():
    with pytest.raises(ValueError, match="more than once"):
        pareto_front(MIXED_ROWS, [Objective("size", "min"), Objective("size", "max")])
    with pytest.raises(ValueError, match="at least one"):
        pareto_front(MIXED_ROWS, [])


def test_non_dominated_ranks_of_mixed_rows():
    assert non_dominated_ranks(MIXED_ROWS, QUALITY_AND_SIZE) == [0, 0, 1, 0, 1, 0, None, None, None]


def test_non_dominated_ranks_of_a_chain():
    rows = [{"a": value, "b": value} for value in (3.0, 1.0, 2.0)]
    objectives = [Objective("a", "min"), Objective("b", "min")]
    assert non_dominated_ranks(rows, objectives) == [2, 0, 1]


def test_crowding_distance_hand_example():
    # Front (1,5) (2,3) (4,2) (5,1), both ranges 4:
    # (2,3): (4-1)/4 + (5-2)/4 = 1.5;  (4,2): (5-2)/4 + (3-1)/4 = 1.25.
    # (5,5) is alone in the second front, so it is a boundary point.
    points = [(1, 5), (2, 3), (4, 2), (5, 1), (5, 5)]
    rows = [{"a": a, "b": b} for a, b in points] + [{"a": 1}]
    objectives = [Objective("a", "min"), Objective("b", "min")]
    assert crowding_distance(rows, objectives) == [math.inf, 1.5, 1.25, math.inf, math.inf, None]


def test_crowding_distance_ignores_direction_and_scale():
    rows = [{"a": a, "b": -10 * b} for a, b in [(1, 5), (2, 3), (4, 2), (5, 1)]]
    objectives = [Objective("a", "min"), Objective("b", "max")]
    assert crowding_distance(rows, objectives) == [math.inf, 1.5, 1.25, math.inf]


def test_normalized_points_relative_to_reference():
    rows = [{"eer": 0.01, "size": 25.0, "accuracy": 0.6}, {"eer": 0.01}]
    objectives = [*EER_AND_SIZE, Objective("accuracy", "max")]
    points = normalized_points(rows, objectives, TEACHER)
    assert points[0] == pytest.approx([0.5, 0.25, 1.25])
    assert np.all(np.isnan(points[1]))
    assert normalized_points([TEACHER], objectives, TEACHER)[0] == pytest.approx([1.0, 1.0, 1.0])


def test_normalized_points_fall_back_to_absolute_scale_for_zero_reference():
    points = normalized_points([{"eer": 0.1, "size": 50.0}], EER_AND_SIZE, {"eer": 0.0, "size": 100.0})
    assert points[0] == pytest.approx([1.1, 0.5])


def test_normalized_points_require_reference_values():
    with pytest.raises(ValueError, match="'size'"):
        normalized_points([{"eer": 0.1, "size": 1.0}], EER_AND_SIZE, {"eer": 0.02})
    with pytest.raises(ValueError, match="'eer'"):
        normalized_points([{"eer": 0.1, "size": 1.0}], EER_AND_SIZE, {"eer": float("nan"), "size": 1.0})


def test_hypervolume_of_a_single_point_2d():
    # Normalised (0.5, 0.25) against (2, 2): 1.5 * 1.75.
    assert hypervolume([{"eer": 0.01, "size": 25.0}], EER_AND_SIZE, TEACHER) == pytest.approx(2.625)


def test_hypervolume_of_two_points_2d():
    # (0.5, 0.25) and (0.25, 1.0): 2.625 + 1.75 - overlap 1.5 * 1.0.
    rows = [{"eer": 0.01, "size": 25.0}, {"eer": 0.005, "size": 100.0}]
    assert hypervolume(rows, EER_AND_SIZE, TEACHER) == pytest.approx(2.875)


def test_hypervolume_of_points_3d_with_a_max_objective():
    # Normalised (0.5, 0.5, 1.0) and (1.0, 0.25, 0.8) against (2, 2, 2):
    # 1.5*1.5*1.0 + 1.0*1.75*1.2 - overlap 1.0*1.5*1.0 = 2.85.
    objectives = [*EER_AND_SIZE, Objective("accuracy", "max")]
    single = [{"eer": 0.01, "size": 50.0, "accuracy": 0.8}]
    assert hypervolume(single, objectives, TEACHER) == pytest.approx(2.25)
    pair = [*single, {"eer": 0.02, "size": 25.0, "accuracy": 0.96}]
    assert hypervolume(pair, objectives, TEACHER) == pytest.approx(2.85)


def test_hypervolume_ignores_points_beyond_the_reference_point():
    rows = [{"eer": 0.05, "size": 10.0}]
    assert hypervolume(rows, EER_AND_SIZE, TEACHER) == 0.0
    assert hypervolume(rows, EER_AND_SIZE, TEACHER, ref_point=3.0) == pytest.approx(0.5 * 2.9)


def test_hypervolume_of_empty_or_invalid_rows_is_zero():
    assert hypervolume([], EER_AND_SIZE, TEACHER) == 0.0
    assert hypervolume([{"eer": 0.01}], EER_AND_SIZE, TEACHER) == 0.0


def test_hypervolume_rejects_non_finite_ref_point():
    with pytest.raises(ValueError, match="ref_point"):
        hypervolume([{"eer": 0.01, "size": 25.0}], EER_AND_SIZE, TEACHER, ref_point=math.inf)


def test_hypervolume_history_is_monotone_and_ends_at_the_full_hypervolume():
    rng = np.random.default_rng(0)
    eers, sizes = rng.uniform(0, 0.05, 40), rng.uniform(0, 200, 40)
    rows = [{"eer": float(eer), "size": float(size)} for eer, size in zip(eers, sizes)]
    rows[5] = {"eer": 0.01}
    history = hypervolume_history(rows, EER_AND_SIZE, TEACHER)
    assert len(history) == len(rows)
    assert all(later >= earlier for earlier, later in zip(history, history[1:]))
    assert history[5] == history[4]
    assert history[-1] == pytest.approx(hypervolume(rows, EER_AND_SIZE, TEACHER))


def test_hypervolume_history_hand_case():
    rows = [{"eer": 0.05, "size": 10.0}, {"eer": 0.01, "size": 25.0}, {"eer": 0.005, "size": 100.0}]
    assert hypervolume_history(rows, EER_AND_SIZE, TEACHER) == pytest.approx([0.0, 2.625, 2.875])


# Objective resolution: differences below it decide neither the front nor the knee.

LATENCY_TRIO = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]


def _exact(objectives):
    return [Objective(objective.metric, objective.direction, EXACT) for objective in objectives]


@pytest.mark.parametrize(
    "item, resolution",
    [
        ({"metric": "eer", "direction": "min", "resolution": 0.0025}, Resolution(0.0025)),
        (["latency_ms", "min", "5%"], Resolution(0.05, relative=True)),
        ({"metric": "latency_ms", "direction": "min", "resolution": None}, COST_MODEL_RESOLUTION),
        ("latency_ms@cortex-a53:min", COST_MODEL_RESOLUTION),
        ("peak_memory_bytes:min", COST_MODEL_RESOLUTION),
        ("eer:min", EXACT),
        ("size_bytes:min", EXACT),
    ],
)
def test_objective_resolution_from_config_forms_and_defaults(item, resolution):
    assert Objective.parse(item).resolution == resolution


def test_objective_config_form_states_the_resolution_and_reads_back():
    for objective in [Objective("latency_ms", "min"), Objective("eer", "min", 0.003), Objective("si_sdri", "max")]:
        config = objective.to_config()
        assert "resolution" in config and Objective.parse(config) == objective


@pytest.mark.parametrize("resolution", [-0.1, "100%", "ten percent", True, math.nan, [0.1]])
def test_objective_rejects_an_invalid_resolution_naming_the_metric(resolution):
    with pytest.raises(ValueError, match="objective 'latency_ms': .*resolution"):
        Objective.parse({"metric": "latency_ms", "direction": "min", "resolution": resolution})


def test_a_trial_faster_by_less_than_the_latency_resolution_leaves_the_front():
    rows = [
        {"eer": 0.075, "size_bytes": 89_736, "latency_ms": 3.161},  # 4-bit
        {"eer": 0.135, "size_bytes": 119_610, "latency_ms": 3.151},  # worse, larger, only 0.01 ms faster
        {"eer": 0.135, "size_bytes": 130_000, "latency_ms": 2.500},  # clearly faster: a real trade-off
    ]
    assert pareto_front(rows, _exact(LATENCY_TRIO)) == [0, 1, 2]
    assert pareto_front(rows, LATENCY_TRIO) == [0, 2]


def test_a_configured_eer_tolerance_ties_close_eers():
    rows = [{"eer": 0.0736, "size_bytes": 168_940}, {"eer": 0.0750, "size_bytes": 89_736}]
    assert pareto_front(rows, [Objective("eer", "min"), Objective("size_bytes", "min")]) == [0, 1]
    assert pareto_front(rows, [Objective("eer", "min", 0.0025), Objective("size_bytes", "min")]) == [1]


def test_a_relative_resolution_scales_with_the_better_value():
    objectives = [Objective("a", "min", "10%"), Objective("b", "min")]
    # 1.09 is within 10% of 1.0, so the second row's better b decides; 1.11 is not.
    assert pareto_front([{"a": 1.0, "b": 2.0}, {"a": 1.09, "b": 1.0}], objectives) == [1]
    assert pareto_front([{"a": 1.0, "b": 2.0}, {"a": 1.11, "b": 1.0}], objectives) == [0, 1]


def test_a_row_is_removed_only_by_a_row_that_stays():
    # Row 1 is within resolution on a and beats row 0 on b; row 2 does the same to row 1; row 2
    # is more than the resolution worse than row 0 on a, so it does not beat row 0. Row 1 goes
    # (beaten by row 2, which stays); row 0 stays, since its only beater is gone.
    objectives = [Objective("a", "min", 1.0), Objective("b", "min")]
    rows = [{"a": 0.0, "b": 10.0}, {"a": 0.9, "b": 8.5}, {"a": 1.8, "b": 7.0}]
    assert pareto_front(rows, objectives) == [0, 2]


def test_rows_beating_one_another_in_a_cycle_are_all_kept():
    # With three objectives, beating within the resolution can go round: 0 beats 1, 1 beats 2,
    # 2 beats 0. No row is unbeaten, so none may be removed.
    objectives = [Objective(metric, "min", 1.0) for metric in "abc"]
    rows = [dict(zip("abc", values)) for values in [(0, 1, 1), (1.5, 0.1, 0.1), (0.6, 1.2, -0.8)]]
    _, values = minimisation_values(rows, objectives)
    assert beats(values, [objective.resolution for objective in objectives]).tolist() == [
        [False, True, False], [False, False, True], [True, False, False]
    ]
    assert pareto_front(rows, objectives) == [0, 1, 2]


def test_copies_of_a_kept_vector_are_all_kept():
    rows = [{"eer": 0.05, "latency_ms": 3.0}, {"eer": 0.05, "latency_ms": 3.0}, {"eer": 0.04, "latency_ms": 3.1}]
    objectives = [Objective("eer", "min"), Objective("latency_ms", "min")]
    assert pareto_front(rows, objectives) == [2]
    assert pareto_front(rows[:2], objectives) == [0, 1]


_VALUES = st.floats(0.1, 10.0).map(lambda value: round(value, 1))
_RESOLUTIONS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.5, 1.0]).map(Resolution),
    st.sampled_from([0.05, 0.1, 0.3]).map(lambda fraction: Resolution(fraction, relative=True)),
)


@st.composite
def _front_cases(draw):
    count = draw(st.integers(2, 3))
    directions = draw(st.lists(st.sampled_from(DIRECTIONS), min_size=count, max_size=count))
    resolutions = draw(st.lists(_RESOLUTIONS, min_size=count, max_size=count))
    rows = draw(st.lists(st.lists(_VALUES, min_size=count, max_size=count), min_size=1, max_size=20))
    objectives = [Objective(f"m{i}", direction, resolution) for i, (direction, resolution) in enumerate(zip(directions, resolutions))]
    return [{f"m{i}": value for i, value in enumerate(row)} for row in rows], objectives


@settings(max_examples=300, deadline=None)
@given(_front_cases())
def test_the_resolved_front_is_a_non_empty_subset_of_the_exact_front_that_explains_every_removal(case):
    rows, objectives = case
    front, exact = pareto_front(rows, objectives), pareto_front(rows, _exact(objectives))
    assert front and set(front) <= set(exact)
    _, values = minimisation_values(rows, objectives)
    beaten = beats(values, [objective.resolution for objective in objectives])
    for removed in set(exact) - set(front):
        assert beaten[front, removed].any()
    if len(objectives) == 2:  # beating can only cycle with three or more objectives
        assert not beaten[np.ix_(front, front)].any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_VALUES, min_size=2, max_size=2), min_size=1, max_size=20))
def test_with_every_resolution_exact_the_front_is_the_pareto_front(points):
    rows = [{"a": a, "b": b} for a, b in points]
    dominated = {
        index for index, (a, b) in enumerate(points)
        if any(c <= a and d <= b and (c, d) != (a, b) for c, d in points)
    }
    assert pareto_front(rows, [Objective("a", "min"), Objective("b", "min")]) == sorted(set(range(len(rows))) - dominated)
