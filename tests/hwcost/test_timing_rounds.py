"""A graph whose timing rounds disagree is timed again until most rounds agree, and the round a
burst of load hit is outvoted, not averaged in."""

from __future__ import annotations

import pytest

from hwcost.calibration import measure
from hwcost.calibration.measure import (
    SETTLED_SPREAD,
    GraphSet,
    TimingPlan,
    agreeing,
    reference_graph,
    settled,
    time_graph_sets,
    time_graphs,
)

PLAN = TimingPlan(warmup_runs=0, min_runs=1, min_cpu_seconds=0.0, rounds=2, extra_rounds=3)


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ([1.0], [1.0]),
        ([1.0, 1.05], [1.0, 1.05]),
        ([1.0, 1.5], [1.0]),
        ([1.5, 1.0, 1.04], [1.0, 1.04]),
        ([0.7, 1.0, 1.02, 1.04, 1.6], [1.0, 1.02, 1.04]),
        ([1.0, 1.5, 1.55], [1.5, 1.55]),
    ],
)
def test_agreeing_rounds_are_the_largest_group_within_the_settled_spread(ratios, expected):
    assert agreeing(ratios) == expected
    group = agreeing(ratios)
    assert max(group) <= min(group) * (1 + SETTLED_SPREAD)


@pytest.mark.parametrize(
    ("ratios", "is_settled"),
    [([1.0, 1.05], True), ([1.0, 1.5], False), ([1.0, 1.5, 1.04], True), ([1.0, 1.3, 1.6], False), ([1.0, 1.02, 1.5, 1.6], False)],
)
def test_rounds_settle_when_more_than_half_of_them_agree(ratios, is_settled):
    assert settled(ratios) is is_settled


def _scripted(monkeypatch, ratios_by_graph):
    """Make every timed round of graph i return the next of ratios_by_graph[i] (reference 1 ms)."""
    scripts = [iter(ratios) for ratios in ratios_by_graph]
    graphs = [reference_graph() for _ in ratios_by_graph]
    order = []

    def fake_round(session, feeds, reference, plan):
        index = next(index for index, (_, graph_feeds) in enumerate(graphs) if graph_feeds is feeds)
        order.append(index)
        return measure._Round(next(scripts[index]) * 1e-3, 1e-3, 0.01, 1)

    monkeypatch.setattr(measure, "_time_round", fake_round)
    return graphs, order


def test_a_round_hit_by_load_is_timed_again_and_outvoted(monkeypatch):
    graphs, order = _scripted(monkeypatch, [[1.0, 1.6, 1.03], [2.0, 2.04]])
    noisy, quiet = time_graphs(graphs, PLAN)
    assert order == [0, 1, 0, 1, 0]  # only the graph whose two rounds disagree gets a third
    assert noisy.rounds == 3 and noisy.ratio == pytest.approx(1.03)
    assert noisy.round_spread == pytest.approx(0.03)  # the spread of the rounds that agree
    assert quiet.rounds == 2 and quiet.ratio == pytest.approx(2.02)
    assert noisy.timed_again and not quiet.timed_again


def test_rounds_that_never_agree_stop_at_the_extra_rounds_and_report_their_whole_spread(monkeypatch):
    graphs, order = _scripted(monkeypatch, [[1.0, 1.3, 1.6, 1.9, 2.2, 9.9]])
    timing = time_graphs(graphs, PLAN)[0]
    assert timing.rounds == PLAN.rounds + PLAN.extra_rounds == len(order)
    assert timing.ratio == pytest.approx(1.6)
    assert timing.round_spread == pytest.approx(1.2)


def test_sets_timed_together_interleave_in_proportion_and_keep_their_own_plans(monkeypatch):
    """A calibration grid and its validation models are timed in the same rounds, each graph at
    its fractional place in its set, so load that drifts over the run weighs on both alike."""
    graphs, order = _scripted(monkeypatch, [[1.0, 1.0, 1.0], [2.0, 2.0], [3.0, 3.05], [4.0, 4.0]])
    three_rounds = TimingPlan(warmup_runs=0, min_runs=1, min_cpu_seconds=0.0, rounds=3)
    validation, grid = time_graph_sets([GraphSet(graphs[:1], three_rounds), GraphSet(graphs[1:], PLAN)])
    # positions: the one validation graph at 1/2, the grid's at 1/6, 1/2, 5/6; the third round is the validation plan's only
    assert order == [1, 0, 2, 3] * 2 + [0]
    assert [timing.rounds for timing in validation] == [3] and [timing.rounds for timing in grid] == [2, 2, 2]
    assert [timing.ratio for timing in grid] == pytest.approx([2.0, 3.025, 4.0])
    assert validation[0].ratio == pytest.approx(1.0)
