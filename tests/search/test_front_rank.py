"""Front ranks follow the recorded front, then non-dominated sorting of the eligible rest."""

from search.front_rank import front_ranks
from search.pareto import Objective

OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min")]


def _row(trial, eer, size, **extra):
    return {"trial": trial, "status": "complete", "eer": eer, "size_bytes": size, **extra}


def test_recorded_members_rank_first_and_the_rest_in_layers_behind_them():
    rows = [
        _row(0, 0.10, 100.0), _row(1, 0.20, 50.0), _row(2, 0.101, 100.5), _row(3, 0.30, 200.0),
        _row(4, 0.01, 10.0, feasible=False), {"trial": 5, "status": "failed"},
    ]
    # trial 2 is dominated by trial 0 by a hair, yet the recorded front (a coarser dominance) lists it
    members = [rows[0], rows[1], rows[2]]
    assert front_ranks(rows, members, OBJECTIVES) == [1, 1, 1, 2, None, None]
    assert front_ranks(rows, members[:2], OBJECTIVES) == [1, 1, 2, 3, None, None]


def test_stopped_rows_rank_only_when_the_run_lets_them_onto_the_front():
    rows = [_row(0, 0.1, 100.0), dict(_row(1, 0.2, 200.0), status="stopped")]
    assert front_ranks(rows, rows[:1], OBJECTIVES) == [1, None]
    assert front_ranks(rows, rows[:1], OBJECTIVES, stopped_in_front=True) == [1, 2]
