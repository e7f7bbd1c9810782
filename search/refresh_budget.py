"""When to redo a refresh whose cost grows with the run: a bounded share of the driver's time.

TensorBoard's folder is rewritten from every trial, so its cost grows with the run. Refreshing
every k trials makes the driver's share of the search grow with it: on a long run of cheap trials
the driver ends up blocking Ray Tune's loop for a large part of each minute and throughput falls.
Waiting a multiple of the last refresh's duration before the next one keeps the refreshes' share
of wall time near 1 / (1 + wait_factor) whatever the run's length (slightly above while the cost
grows, since each wait is set by the previous, cheaper refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RefreshBudget:
    """Decides whether a costly refresh is due, from the duration of the previous one.

    Args:
        wait_factor: seconds to wait per second the last refresh took.
        min_interval: seconds between refreshes however cheap they are.
        clock: monotonic seconds (replaced in tests).
    """

    wait_factor: float
    min_interval: float
    clock: Callable[[], float] = time.monotonic
    _next: float = field(default=float("-inf"), init=False)

    def due(self) -> bool:
        return self.clock() >= self._next

    def run(self, refresh: Callable[[], object]) -> None:
        """Run `refresh` now and schedule the next one after its duration times `wait_factor`."""
        start = self.clock()
        refresh()
        end = self.clock()
        self._next = end + max(self.min_interval, self.wait_factor * (end - start))

