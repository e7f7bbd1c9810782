"""Per-layer cost breakdown of a run's model on its targets (`search hwcost show`).

The model is built from the config with its initial weights: costs depend on shapes and bit
widths, never on weight values, so no teacher has to be trained to inspect them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
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


COLUMNS = (
    ("layer", "left"),
    ("kind", "left"),
    ("kernel", "left"),
    ("MMAC/s", "right"),
    ("bound", "left"),
    ("compute\nms", "right"),
    ("memory\nms", "right"),
    ("latency\nms", "right"),
    ("weight\nbytes", "right"),
)
MIN_LAYER_WIDTH = 12
"""Narrowest the layer column gets; below it a narrow terminal wraps the other columns too."""
ABBREVIATIONS = {"elementwise": "eltwise"}
"""Kinds and kernel classes shown shorter (named in the caption), so the table fits 100 columns."""


def cost_table(estimate: CostEstimate, title: str, width: int = 100) -> Table:
    """One row per layer (kernel class, bound, time, bytes) and a total row, at most `width` columns wide.

    Long layer names (an extractor's `voiceprint.blocks.1.norm_depthwise`) would push the table
    past a 100-column terminal, where rich cuts them to an ellipsis; instead they are wrapped
    after their dots, so every name stays whole and readable.
    """
    rows = [
        [
            layer.name,
            ABBREVIATIONS.get(layer.kind, layer.kind),
            ABBREVIATIONS.get(layer.kernel_class, layer.kernel_class),
            f"{layer.macs / 1e6:.2f}",
            layer.bound,
            f"{layer.compute_ms:.4f}",
            f"{layer.memory_ms:.4f}",
            f"{layer.latency_ms:.4f}",
            str(layer.weight_bytes),
        ]
        for layer in estimate.layers
    ]
    total = ["total", "", "", f"{sum(layer.macs for layer in estimate.layers) / 1e6:.2f}", "", "", "",
             f"{estimate.latency_ms:.3f}", str(estimate.storage_bytes)]
    caption = (
        f"per second of audio; real-time factor {estimate.real_time_factor:.4f}; "
        f"peak memory {estimate.peak_memory_bytes / 1e6:.2f} MB; stored {estimate.storage_bytes} B (packed file); "
        + "; ".join(f"{short}: {full}" for full, short in ABBREVIATIONS.items())
    )
    table = _table(title, rows, total, caption)
    excess = _natural_width(table) - width
    if excess > 0:
        longest = max(len(row[0]) for row in rows)
        layer_width = max(longest - excess, MIN_LAYER_WIDTH)
        table = _table(title, [[wrap_dotted(row[0], layer_width), *row[1:]] for row in rows], total, caption)
    return table


def wrap_dotted(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken after a dot where it can be."""
    lines: list[str] = []
    for part in re.findall(r"[^.]+\.?|\.", name):
        while len(part) > width:  # a part longer than a line is cut
            lines.append(part[:width])
            part = part[width:]
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(lines)


def _table(title: str, rows: list[list[str]], total: list[str], caption: str) -> Table:
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header, justify in COLUMNS:
        table.add_column(header, justify=justify, no_wrap=header != "layer", overflow="fold")
    for row in rows:
        table.add_row(*row)
    table.add_row(*total, style="bold")
    return table


def _natural_width(table: Table) -> int:
    """The columns the table takes when nothing is wrapped."""
    console = Console(width=10_000)
    return Measurement.get(console, console.options, table).maximum
