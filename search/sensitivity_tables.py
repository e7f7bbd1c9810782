"""A run's per-layer sensitivity table and ILP problem, cached per teacher and reused across seeds and runs.

Two cache entries sit in the run's `cache_dir`, both keyed by the teacher's weights
(`evaluators.sensitivity_data.state_digest`) and the (quantizer, bits) choices the space offers
its layers, never by the run's seed:

- `layer-choices-<key>.pt`: each layer quantized once per choice, its error and packed bytes
  (`evaluators.layer_quantization`), keyed also by the spec's side-data precision;
- `sensitivity-<key>.pt`: an estimator's damage table, keyed also by the estimator's settings and
  by what its batches are drawn from (the training source, front-end and loss settings).

A task offers batches through its `Task.sensitivity_data` (speaker verification does; a task that does not
gets the data-free estimator by default, and a data-driven one is refused with a clear error).
The run config's `search.sensitivity` block selects the estimator and its settings.
`search sensitivity CONFIG` computes the table up front; a run with the `ilp`, `nsga2` or
`predictor-screened` sampler finds it there (`AllocationSource`) and records the table it read in
its run directory (`sensitivity.json`), which the report draws without computing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from evaluators.data.cache import cached_tensors, content_hash
from evaluators.evaluation import Prepared
from evaluators.layer_quantization import LayerStats, QuantChoice, layer_choice_stats
from evaluators.sensitivity_data import state_digest
from evaluators.sensitivity_estimators import (
    DATA_FREE_ESTIMATOR,
    DEFAULT_ESTIMATOR,
    DataRequest,
    SensitivityData,
    SensitivityEstimator,
    SensitivityProblem,
    SensitivityTable,
    get_estimator,
)
from search.allocation import AllocationProblem
from search.choice_costs import allocation_problem, check_priceable, layer_choices
from search.run_config import RunConfig
from search.run_dir import RunDirectory
from search.tasks import get_task

CACHE_VERSION = 1
"""Bumped when an entry's meaning changes, so older entries are rebuilt rather than misread."""
_TABLE_KIND = "sensitivity"

Progress = Callable[[str, int, int], None]


class SensitivityDataSource(Protocol):
    """Where a task's sensitivity batches and loss come from."""

    def identity(self, request: DataRequest) -> str:
        """What the batches depend on, from the config alone (the table's cache key)."""

    def load(
        self, teacher_state: Mapping[str, torch.Tensor], request: DataRequest, progress: Progress | None = None
    ) -> SensitivityData:
        """The batches and the loss."""


def offers_batches(task: str) -> bool:
    """Whether the task can feed data-driven sensitivity estimators."""
    return get_task(task).sensitivity_data is not None


@dataclass(frozen=True)
class RunSensitivity:
    """A teacher's damage table, the per-choice measurements it was built from, and its cache entry.

    Attributes:
        entry: The cache file the table was read from (or written to), named in the run's record.
    """

    table: SensitivityTable
    stats: dict[str, LayerStats]
    entry: str


def default_estimator(task: str) -> str:
    """The Hessian estimator where the task offers batches, the data-free proxy otherwise."""
    return DEFAULT_ESTIMATOR if offers_batches(task) else DATA_FREE_ESTIMATOR


def check_estimator(task: str, estimator: SensitivityEstimator) -> None:
    """Raise ValueError when `estimator` needs batches that `task` does not offer (the config and the command name the key)."""
    if estimator.data_request is not None and not offers_batches(task):
        raise ValueError(
            f"sensitivity estimator {estimator.name!r} needs training batches, which task {task!r} does not offer; "
            f"use {DATA_FREE_ESTIMATOR}"
        )


def run_estimator(config: RunConfig) -> SensitivityEstimator:
    """The estimator the config's `search.sensitivity` selects, or the task's default with its default settings."""
    configured = config.search.sensitivity
    return configured if configured is not None else get_estimator(default_estimator(config.task))


def run_sensitivity(
    config: RunConfig,
    prepared: Prepared,
    estimator: SensitivityEstimator | None = None,
    progress: Progress | None = None,
) -> RunSensitivity:
    """The run's damage table for every choice its space offers, from the cache when present.

    Args:
        estimator: Overrides the config's (`run_estimator`); `search sensitivity --estimator` passes it.

    Raises:
        ValueError: A data-driven estimator for a task without batches.
    """
    progress = progress or (lambda stage, done, total: None)
    chosen = estimator or run_estimator(config)
    check_estimator(config.task, chosen)
    choices = layer_choices(prepared.space)
    teacher = state_digest(prepared.teacher_state)
    keys = {layer: [choice.key for choice in layer_choices] for layer, layer_choices in choices.items()}
    stats = _choice_stats(config.cache_dir, prepared, choices, teacher, keys, progress)
    request = chosen.data_request
    source = get_task(config.task).sensitivity_data(config) if request is not None else None

    def build() -> dict[str, Any]:
        progress(f"{chosen.name} sensitivities", 0, 1)
        data = source.load(prepared.teacher_state, request, progress) if source is not None else None
        problem = SensitivityProblem(prepared.spec, prepared.teacher_state, stats, data)
        table = chosen.table(problem).to_entry()
        progress(f"{chosen.name} sensitivities", 1, 1)
        return table

    identity = source.identity(request) if source is not None else None
    key = content_hash(CACHE_VERSION, teacher, chosen.name, chosen.settings(), identity, keys)
    table = SensitivityTable.from_entry(cached_tensors(config.cache_dir, _TABLE_KIND, key, build))
    return RunSensitivity(table, stats, f"{_TABLE_KIND}-{key}.pt")


def _choice_stats(
    cache_dir: str,
    prepared: Prepared,
    choices: Mapping[str, tuple[QuantChoice, ...]],
    teacher: str,
    keys: Mapping[str, list[str]],
    progress: Progress,
) -> dict[str, LayerStats]:
    def build() -> dict[str, Any]:
        progress("quantization errors", 0, 1)
        measured = layer_choice_stats(prepared.spec, prepared.teacher_state, choices, activation_bits)
        progress("quantization errors", 1, 1)
        return {layer: stats.to_entry() for layer, stats in measured.items()}

    activation_bits = prepared.space.default_activation_bits()
    key = content_hash(CACHE_VERSION, teacher, prepared.spec.side_bits, keys, activation_bits)
    entry = cached_tensors(cache_dir, "layer-choices", key, build)
    return {layer: LayerStats.from_entry(stats) for layer, stats in entry.items()}


class AllocationSource:
    """The run's ILP problem, built on the first call and kept: sampler factories call it only when they use it.

    Args:
        config, prepared: The run (its `search.sensitivity` selects the estimator) and its prepared teacher and space.
        progress: Called with (stage, done, total) while tables are computed.
        run_dir: Where the table the problem was built from is recorded, for the run's report.
    """

    def __init__(
        self,
        config: RunConfig,
        prepared: Prepared,
        progress: Progress | None = None,
        run_dir: RunDirectory | None = None,
    ) -> None:
        self.config = config
        self.prepared = prepared
        self.progress = progress
        self.run_dir = run_dir
        self._problem: AllocationProblem | None = None

    def __call__(self) -> AllocationProblem:
        if self._problem is None:
            check_priceable(self.prepared.space)  # before the sensitivities, which it would waste
            measured = run_sensitivity(self.config, self.prepared, progress=self.progress)
            if self.run_dir is not None:
                self.run_dir.write_sensitivity({"cache_entry": measured.entry, **measured.table.to_entry()})
            self._problem = allocation_problem(
                self.prepared.space,
                self.prepared.spec,
                self.prepared.teacher_state,
                measured.table,
                measured.stats,
                self.config.targets[0],
            )
        return self._problem


__all__ = [
    "offers_batches",
    "AllocationSource",
    "RunSensitivity",
    "SensitivityDataSource",
    "check_estimator",
    "default_estimator",
    "run_estimator",
    "run_sensitivity",
]
