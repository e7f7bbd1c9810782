"""`search space CONFIG`: a run's knobs, their choices, the layers each pattern matches, the space's size.

The model is built from the config with its initial weights: the space depends on layer names,
groups and taps, never on weight values, so a space can be checked before any teacher is trained.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from search.config import RunConfig
from search.tasks import get_task
from spaces.knobs import BITS, QUANTIZER, Domain, describe_domain, domain_count
from spaces.layer_patterns import pattern_matches
from spaces.space import Knob, SearchSpace

_SETS = {
    BITS: "weight bits",
    QUANTIZER: "weight quantizer",
    "activation_bits": "activation bits",
    "student.family": "student family",
    "student.width": "student width multiplier",
    "student.depth": "student depth multiplier",
    "distill.taps": "distilled teacher taps",
    "distill.weight": "distillation loss weight",
    "distill.mode": "distillation target (sum / concat)",
    "share": "parameter sharing",
}
"""What each knob role sets in the compiled plan, in words."""


def build_space(config: RunConfig) -> SearchSpace:
    """The run's search space over its model (initial weights)."""
    return SearchSpace.for_model(config.space, get_task(config.task).model_spec(config))


def space_report(config: RunConfig, space: SearchSpace) -> RenderableType:
    """Knobs table, pattern table, per-layer table and a summary (size, FP32 layers, fidelity)."""
    return Group(knob_table(space), pattern_table(config, space), layer_table(space), summary(config, space))


def print_space(config: RunConfig, console: Console) -> None:
    console.print(space_report(config, build_space(config)))


def knob_table(space: SearchSpace) -> Table:
    """One row per parameter in define-by-run order: a bits knob whose widths depend on the
    quantizer has one row per set of quantizers (its `<knob>@<quantizer>` parameters)."""
    table = Table(title=f"Search space over {space.family or 'the model'}: knobs in sampling order")
    for column in ("knob", "sets", "values", "count", "default", "when", "layers"):
        table.add_column(column, justify="right" if column in ("count", "layers") else "left")
    for knob in space.compiled_knobs:
        conditions = [condition.describe() for condition in knob.when]
        default = "" if knob.role == BITS else _text(knob.default)
        layers = str(len(knob.layers)) if knob.layers else ""
        for name, domain, quantizers in _parameters(knob):
            when = ", ".join([*conditions, *([f"quantizer is {quantizers}"] if quantizers else [])])
            count = domain_count(domain)
            cells = (name, _SETS[knob.role], describe_domain(domain), "continuous" if math.isinf(count) else str(count))
            table.add_row(*(Text(cell) for cell in (*cells, default, when, layers)))
    return table


def _parameters(knob: Knob) -> list[tuple[str, Domain, str]]:
    """(parameter name, domain, quantizer set or "") of each parameter a knob is asked under."""
    if not knob.depends_on_quantizer:
        return [(knob.name, knob.allowed_bits.get(None, knob.domain), "")]
    return [
        (f"{knob.name}@{'+'.join(sorted(kinds))}", bits, " + ".join(sorted(kinds)))
        for kinds, bits in knob.allowed_bits.items()
    ]


def pattern_table(config: RunConfig, space: SearchSpace) -> Table:
    """Each layer pattern or group of each declared layer knob, and the layers it matches."""
    table = Table(title="Layers addressed by each pattern (group:<name> for groups)")
    for column in ("knob", "pattern", "matches", "layers"):
        table.add_column(column, justify="right" if column == "matches" else "left")
    for declared in config.space.all_knobs:
        if not declared.is_layer_knob:
            continue
        granularity = f" (one knob per {declared.granularity})" if declared.granularity else ""
        for pattern, layers in pattern_matches(declared, space.layer_groups, space.family or "the model").items():
            cells = (declared.name + granularity, pattern, str(len(layers)), ", ".join(layers))
            table.add_row(*(Text(cell) for cell in cells))
    return table


def layer_table(space: SearchSpace) -> Table:
    """Every quantizable layer with the knob that sets its bits and its quantizer (FP32 when none)."""
    table = Table(title="Quantizable layers")
    for column in ("layer", "group", "bits from", "quantizer from"):
        table.add_column(column)
    for group, layers in space.layer_groups.items():
        for layer in layers:
            bits = space.bits_knob_of(layer)
            quantizer = space.quantizer_knob_of(layer) or f"{space.config.quantizer} (space.quantizer)"
            table.add_row(layer, group, bits or "FP32 (no bits knob)", quantizer if bits else "")
    return table


def summary(config: RunConfig, space: SearchSpace) -> Text:
    """Size of the space, the FP32 layers, baselines, taps and the fidelity ladder."""
    lines = [f"size: {size_text(space)}"]
    fp32 = space.fp32_layers
    lines.append(
        f"FP32 in every candidate (no bits knob): {', '.join(fp32)}" if fp32 else "every quantizable layer has a bits knob"
    )
    baselines = ", ".join(str(bits) for bits in config.space.baselines) or "none"
    lines.append(f"baselines (uniform bits, evaluated first): {baselines}; default quantizer: {config.space.quantizer}")
    lines.append(f"distillation taps of {space.family or 'the model'}: {', '.join(space.taps) or 'none'}")
    steps = getattr(getattr(config, "fidelity", None), "steps", None)
    if steps is not None:
        lines.append(f"fidelity ladder (cumulative fine-tuning steps per rung, not a knob): {list(steps)}")
    return Text("\n".join(lines))


def size_text(space: SearchSpace) -> str:
    """`117,649 candidates`, or `infinite (continuous: distill.weight)`."""
    if math.isinf(space.size):
        continuous = [knob.name for knob in space.compiled_knobs if math.isinf(domain_count(knob.domain))]
        return f"infinite (continuous: {', '.join(continuous)})"
    return f"{space.size:,} candidates"


def _text(value: Any) -> str:
    return "null" if value is None else str(value)
