"""Multi-objective successive halving over the fidelity ladder, as a Ray Tune trial scheduler.

Each trial reports once per rung of the ladder (post-training quantization, then cumulative
fine-tuning budgets). When a trial reports at a rung below the last, it goes on to the next rung
only if it ranks in the best `1 / reduction_factor` of all trials that have reported at that rung
so far (asynchronous successive halving, as ASHA, which needs no pausing or checkpoints): it is
promoted when fewer than `ceil(n / reduction_factor)` of the n trials at that rung rank strictly
before it, so ties at the boundary go its way.

The ranking is NSGA-II's, not one metric's: feasible before infeasible, then non-dominated rank,
then crowding distance (isolated points first). Ranking by EER alone would stop
every small, slightly worse model at the first rung and cull the small-model end of the front;
crowding gives each front's extremes infinite distance, so both ends keep being refined.

Stopped trials keep their last rung's metrics; the engine records them as `stopped` and keeps
them off the front unless the run asks otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.constraints import Constraint, violations
from search.pareto import Objective, crowding_distance, non_dominated_ranks
from search.trial import RUNG


class ParetoHalving:
    """The promotion rule, free of Ray: `record` one rung result, learn whether the trial goes on.

    Args:
        objectives: The run's objectives.
        rungs: Number of rungs in the fidelity ladder.
        reduction_factor: About one in this many trials reaching a rung is promoted from it.
        constraints: The run's constraints; infeasible results rank after every feasible one.
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        rungs: int,
        reduction_factor: int = 3,
        constraints: Sequence[Constraint] = (),
    ) -> None:
        if rungs < 1:
            raise ValueError(f"rungs={rungs}: the fidelity ladder needs at least one rung")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor={reduction_factor}: must be >= 2")
        self.objectives = tuple(objectives)
        self.rungs = rungs
        self.reduction_factor = reduction_factor
        self.constraints = tuple(constraints)
        self._results: list[dict[str, dict[str, Any]]] = [{} for _ in range(rungs)]

    def record(self, trial_id: str, rung: int, metrics: Mapping[str, Any]) -> bool:
        """Record a trial's result at `rung`; True when it should go on (always at the last rung)."""
        if not 0 <= rung < self.rungs:
            raise ValueError(f"trial {trial_id}: rung {rung} outside the ladder of {self.rungs} rungs")
        if rung == self.rungs - 1:
            return True
        results = self._results[rung]
        results.setdefault(trial_id, dict(metrics))
        keys = self._sort_keys(rung)
        ahead = sum(1 for other, key in keys.items() if other != trial_id and key < keys[trial_id])
        return ahead < math.ceil(len(results) / self.reduction_factor)

    def results_per_rung(self) -> list[int]:
        """How many trials have reported at each rung."""
        return [len(results) for results in self._results]

    def ranking(self, rung: int) -> list[str]:
        """Trial ids recorded at `rung`, best first (ties in arrival order)."""
        keys = self._sort_keys(rung)
        return sorted(keys, key=keys.__getitem__)

    def _sort_keys(self, rung: int) -> dict[str, tuple[float, float, float]]:
        """Per trial at `rung`: (infeasible, rank or total violation, -crowding); lower is better."""
        ids = list(self._results[rung])
        rows = [self._results[rung][trial_id] for trial_id in ids]
        excess = [sum(max(0.0, value) for value in violations(self.constraints, row).values()) for row in rows]
        feasible = [index for index, value in enumerate(excess) if value == 0.0]
        ranked: dict[int, tuple[float, float, float]] = {}
        if feasible:
            subset = [rows[index] for index in feasible]
            ranks = non_dominated_ranks(subset, self.objectives)
            crowding = crowding_distance(subset, self.objectives)
            for index, rank, distance in zip(feasible, ranks, crowding):
                if rank is not None:
                    ranked[index] = (0.0, float(rank), -distance)
        # infeasible, or an objective missing: after every ranked row, the least violating first
        return {trial_id: ranked.get(index, (1.0, excess[index], 0.0)) for index, trial_id in enumerate(ids)}


class ParetoHalvingScheduler(FIFOScheduler):
    """Ray Tune scheduler applying `ParetoHalving` to every result carrying a `rung` key."""

    # The decision must come before the trial starts the next (costly) rung.
    _supports_buffered_results = False

    def __init__(self, halving: ParetoHalving) -> None:
        super().__init__()
        self.halving = halving

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if RUNG not in result:
            return TrialScheduler.CONTINUE
        promoted = self.halving.record(trial.trial_id, int(result[RUNG]), result)
        return TrialScheduler.CONTINUE if promoted else TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"ParetoHalvingScheduler: results per rung {self.halving.results_per_rung()}"
