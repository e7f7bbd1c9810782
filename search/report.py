"""Terminal report of a run: the Pareto front next to the FP32 reference row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from search.run_dir import RunDirectory


def bits_summary(row: Mapping[str, Any]) -> str:
    """Per-group bit widths in knob order, e.g. `8/4/4/3/3/6` (FP32 shown as `f`)."""
    knobs = [value for key, value in row.items() if key.startswith("bits.")]
    return "/".join("f" if int(bits) == 32 else str(int(bits)) for bits in knobs) or "fp32"


def front_table(run_dir: RunDirectory) -> Table:
    """The front (sorted by size) with the FP32 reference first."""
    pareto = run_dir.read_pareto()
    reference = pareto["reference"]
    objectives = ", ".join(f"{o['metric']} ({o['direction']})" for o in pareto["objectives"])
    table = Table(title=f"Pareto front of {run_dir.path.name}: {objectives}")
    members = sorted(pareto["members"], key=lambda row: row["size_bytes"])
    for column in ("trial", "size", "ratio", "EER %", "minDCF", "latency ms", "peak MB"):
        table.add_column(column, justify="left" if column == "trial" else "right")
    widest_bits = max((len(bits_summary(row)) for row in [reference, *members]), default=4)
    table.add_column("bits", no_wrap=True, min_width=widest_bits)
    knobs = [key[len("bits."):] for key in (members[0] if members else {}) if key.startswith("bits.")]
    table.caption = f"bits: {'/'.join(knobs)} (f = FP32)" if knobs else None
    table.add_row(*_cells(reference), style="bold cyan")
    for member in members:
        table.add_row(*_cells(member))
    return table


def print_report(run_dir: RunDirectory, console: Console | None = None) -> None:
    console = console or Console()
    console.print(front_table(run_dir))
    trials = run_dir.read_trials()
    failed = sum(1 for row in trials if row.get("status") != "complete")
    hypervolume = run_dir.read_hypervolume()
    final = f"{hypervolume[-1]:.4f}" if hypervolume else "n/a"
    console.print(f"{len(trials)} trials ({failed} failed), hypervolume {final}; files in {run_dir.path}")


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [
        str(row["trial"]),
        _bytes(row["size_bytes"]),
        f"{row.get('compression_ratio', 1.0):.2f}x",
        f"{100 * row['eer']:.2f}",
        f"{row['min_dcf']:.3f}",
        f"{row['latency_ms']:.2f}",
        f"{row['peak_memory_bytes'] / 1e6:.2f}",
        bits_summary(row),
    ]


def _bytes(size: float) -> str:
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.2f} MB"
