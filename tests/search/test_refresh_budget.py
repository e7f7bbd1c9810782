"""A refresh whose cost grows is spaced so that its share of the driver's time stays bounded."""

from __future__ import annotations

import pickle
import time

from search.refresh_budget import RefreshBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_refresh_is_due_at_once() -> None:
    assert RefreshBudget(10.0, 1.0, clock=FakeClock()).due()


def test_next_refresh_waits_a_multiple_of_the_last_duration() -> None:
    clock = FakeClock()
    budget = RefreshBudget(wait_factor=10.0, min_interval=1.0, clock=clock)

    def slow_refresh() -> None:
        clock.now += 2.0

    budget.run(slow_refresh)  # ends at t=2 after taking 2 s: next due at 2 + 20
    clock.now = 21.9
    assert not budget.due()
    clock.now = 22.0
    assert budget.due()


def test_cheap_refreshes_keep_the_minimum_interval() -> None:
    clock = FakeClock()
    budget = RefreshBudget(wait_factor=10.0, min_interval=5.0, clock=clock)
    budget.run(lambda: None)
    clock.now = 4.9
    assert not budget.due()
    clock.now = 5.0
    assert budget.due()


def test_growing_refresh_cost_keeps_a_bounded_share_of_time() -> None:
    """Trials arrive every second; each refresh costs 1 ms per trial so far."""
    clock = FakeClock()
    budget = RefreshBudget(wait_factor=40.0, min_interval=0.0, clock=clock)
    refreshing = 0.0
    for trial in range(1, 5001):
        clock.now += 1.0
        if budget.due():
            cost = 0.001 * trial

            def refresh(cost: float = cost) -> None:
                clock.now += cost

            budget.run(refresh)
            refreshing += cost
    # each refresh costs a little more than the one that set its wait: slightly above 1/41
    assert refreshing / clock.now <= 1.05 / 41
    every_five = sum(0.001 * trial for trial in range(5, 5001, 5))
    assert refreshing < every_five / 10  # what a fixed every-5-trials refresh would spend


def test_budget_pickles_with_the_real_clock() -> None:
    budget = pickle.loads(pickle.dumps(RefreshBudget(2.0, 1.0)))
    assert budget.clock is time.monotonic and budget.due()
