import math

import numpy as np
import pytest

from search.pareto import (
    Objective,
    crowding_distance,
    hypervolume,
    hypervolume_history,
    non_dominated_ranks,
    normalized_points,
    pareto_front,
)

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
