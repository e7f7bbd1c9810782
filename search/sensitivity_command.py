"""`search sensitivity [CONFIG] [--estimator NAME]`: print and save a teacher's per-layer sensitivities.

It prepares the run as `search run` would (features and teacher from the cache, trained when
missing), then computes the damage of every (quantizer, bits) choice the config's space offers
each layer with the chosen estimator (`evaluators.sensitivity_estimators`): the config's
`search.sensitivity` block, or `--estimator NAME`, which overrides it (with the config's settings
when the block names the same estimator, else with the estimator's defaults). The table is cached
beside the teacher (`search.sensitivity_tables`), so a later run with the `ilp`, `nsga2` or
`predictor-screened` sampler, any seed, finds it there; the command also writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evaluators.sensitivity_estimators import ESTIMATORS, SensitivityEstimator, SensitivityTable, get_estimator
from search.config import ConfigError, RunConfig, load_config
from search.overrides import settings_dict
from search.sensitivity_tables import check_estimator, run_estimator, run_sensitivity


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Register `search sensitivity` on the CLI's subcommands."""
    command = subcommands.add_parser(
        "sensitivity",
        help="print and save a teacher's per-layer sensitivities for the config's space",
        description="Estimate how much quantizing each layer alone at each (quantizer, bits) choice of the "
        "config's space hurts the teacher, print it per layer and save it as JSON. The table is cached per "
        "teacher and estimator, and the ilp, nsga2 and predictor-screened samplers reuse it.",
    )
    from search.cli import _config_arguments  # the CLI imports this module; its CONFIG and --set are shared

    _config_arguments(command)
    command.add_argument(
        "--estimator",
        choices=list(ESTIMATORS),
        help="; ".join(f"{name}: {estimator.help}" for name, estimator in ESTIMATORS.items())
        + " (default: the config's search.sensitivity, else hessian where the task has training data, else perturbation)",
    )
    command.add_argument("--out", help="JSON file to write (default: results/sensitivity/<name>-<estimator>.json)")
    command.set_defaults(handler=_sensitivity)
    return command


def _sensitivity(args: argparse.Namespace, console: Console) -> int:
    from search.progress import RichDisplay
    from search.tasks import get_task

    config = load_config(args.config, settings_dict(args.set))
    estimator = chosen_estimator(config, args.estimator)
    task = get_task(config.task)
    with RichDisplay() as display:
        prepared = task.evaluator().prepare(task.setup(config), display.stage)
        table = run_sensitivity(config, prepared, estimator, display.stage).table
    for quantizer_table in sensitivity_tables(table):
        console.print(quantizer_table)
    out = Path(args.out or Path("results") / "sensitivity" / f"{config.name}-{estimator.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config.name, "task": config.task, **table.to_entry()}, indent=1) + "\n")
    console.print(f"sensitivities: {out}")
    return 0


def chosen_estimator(config: RunConfig, flag: str | None) -> SensitivityEstimator:
    """The config's estimator, or the one `--estimator` names (the config's settings kept when it names the same).

    Raises:
        ConfigError: The flag names a data-driven estimator for a task without batches.
    """
    configured = run_estimator(config)
    if flag is None or flag == configured.name:
        return configured
    estimator = get_estimator(flag)
    try:
        check_estimator(config.task, estimator)
    except ValueError as error:
        raise ConfigError(f"--estimator {flag}: {error}") from None
    return estimator


def sensitivity_tables(table: SensitivityTable) -> list[Table]:
    """One table per quantizer: each layer's parameters, curvature and damage at every width."""
    tables = []
    choices = table.choices()
    for quantizer in dict.fromkeys(choice.quantizer for choice in choices):
        widths = [choice for choice in choices if choice.quantizer == quantizer]
        shown = Table(title=f"{table.estimator} sensitivity: damage with one layer {quantizer}-quantized")
        for column in ("layer", "params", "curvature", *(f"{choice.bits} bits" for choice in widths)):
            shown.add_column(column, justify="left" if column == "layer" else "right")
        for name, layer in table.layers.items():
            curvature = "-" if layer.curvature is None else f"{layer.curvature:.3g}"
            cells = [f"{layer.damage[choice]:.3g}" if choice in layer.damage else "" for choice in widths]
            shown.add_row(name, f"{layer.params:,}", curvature, *cells)
        tables.append(shown)
    return tables


__all__ = ["add_parser", "chosen_estimator", "sensitivity_tables"]
