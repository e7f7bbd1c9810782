"""Per-layer cost breakdown of a run's model on its targets (`search hwcost show`).

The model is built from the config with its initial weights: costs depend on shapes and bit
widths, never on weight values, so no teacher has to be trained to inspect them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from hwcost import CostEstimate, CostModel
from search.config import ConfigError, RunConfig
from search.tasks import get_task
from spaces.compress import compress
from spaces.plan import CompressionPlan
from spaces.space import SearchSpace, SpaceError


def parse_candidate(text: str | None) -> dict[str, Any]:
    """A candidate given on the command line: inline JSON or a path to a JSON file."""
    if not text:
        return {}
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        candidate = json.loads(source)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--candidate: not valid JSON ({error.msg}): {text}") from None
    if not isinstance(candidate, dict):
        raise ConfigError(f"--candidate: expected a JSON object of knobs, got {type(candidate).__name__}")
    return candidate


def estimate_candidate(config: RunConfig, candidate: Mapping[str, Any], target: str) -> CostEstimate:
    """Cost of the config's model quantized per `candidate` (FP32 when empty) on `target`."""
    spec = get_task(config.task).model_spec(config)
    model = spec.build()
    try:
        plan = SearchSpace.for_model(config.space, spec, model).plan(candidate) if candidate else CompressionPlan()
    except SpaceError as error:
        raise ConfigError(f"--candidate: {error}") from None
    compressed = compress(spec, model.state_dict(), plan.layer_bits, plan.layer_quantizers)
    return CostModel().estimate(compressed.description, target)


def cost_table(estimate: CostEstimate, title: str) -> Table:
    """One row per layer (kernel class, bound, time, bytes) and a total row."""
    table = Table(title=title)
    for column in ("layer", "kind", "kernel", "MMAC/s", "bound", "compute ms", "memory ms", "latency ms", "weight B"):
        table.add_column(column, justify="left" if column in ("layer", "kind", "kernel", "bound") else "right")
    for layer in estimate.layers:
        table.add_row(
            layer.name,
            layer.kind,
            layer.kernel_class,
            f"{layer.macs / 1e6:.2f}",
            layer.bound,
            f"{layer.compute_ms:.4f}",
            f"{layer.memory_ms:.4f}",
            f"{layer.latency_ms:.4f}",
            str(layer.weight_bytes),
        )
    table.add_row(
        "total", "", "", f"{sum(layer.macs for layer in estimate.layers) / 1e6:.2f}", "", "", "",
        f"{estimate.latency_ms:.3f}", str(estimate.storage_bytes), style="bold",
    )
    table.caption = (
        f"per second of audio; real-time factor {estimate.real_time_factor:.4f}; "
        f"peak memory {estimate.peak_memory_bytes / 1e6:.2f} MB; stored {estimate.storage_bytes} B (packed file)"
    )
    return table
