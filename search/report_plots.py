"""The HTML report's interactive Plotly figures: Pareto scatters, hypervolume curve, front bit widths,
per-layer sensitivities.

Values are shown in the units of `search.trial_columns` (EER in %, sizes in kB or MB, latency in
ms on its named target), and hovering a point lists every metric and knob of its trial, so close
points need no printed labels that would overlap.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.colors
import plotly.graph_objects as go

from evaluators.sensitivity_estimators import SensitivityTable
from search.pareto import Objective
from search.trial_columns import BITS_PREFIX, MetricLabel, shown_labels

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
"""Plotly's config for every figure of the page: no link to plotly.com, width follows the page."""

_FP32_BITS = 32
_FRONT_COLOR = "#d62728"
_TRIAL_COLOR = "#9e9e9e"
_HEIGHT = 500
_LAYOUT = {
    "template": "plotly_white",
    "height": _HEIGHT,
    "hovermode": "closest",
    "hoverlabel": {"align": "left"},
    "legend": {"orientation": "h", "y": -0.18},
    "margin": {"t": 50, "l": 70, "r": 20},
}


def hover_texts(
    rows: Sequence[Mapping[str, Any]], labels: Sequence[MetricLabel], knobs: Sequence[str], note: str = ""
) -> list[str]:
    """Each row's hover text: its trial (and `note`), every shown metric with its unit, every knob."""
    texts = []
    for row in rows:
        head = f"<b>{html.escape(_trial_name(row))}</b>{html.escape(note)}"
        metrics = [f"{html.escape(label.title)}: {label.format(row.get(label.key))}" for label in labels]
        knob_lines = [f"{html.escape(knob)}: {html.escape(str(row[knob]))}" for knob in knobs if knob in row]
        texts.append("<br>".join([head, *metrics, *knob_lines]))
    return texts


def pareto_plots(
    trials: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    members: Sequence[Mapping[str, Any]],
    labels: Mapping[str, MetricLabel],
    knobs: Sequence[str],
) -> dict[str, go.Figure]:
    """One scatter per pair of objectives, keyed `<y>_vs_<x>`: the earlier objective (the quality
    metric, as configs list it first) is the y axis.

    Every trial with both values is drawn (one series per quantizer when trials used several), the
    front's members in red above them, the FP32 reference as a star.
    """
    shown = shown_labels(labels, [objective.metric for objective in objectives])
    front_trials = {member["trial"] for member in members}
    others = [row for row in trials if row["trial"] not in front_trials]
    kinds = sorted({str(row.get("quantizer", "")) for row in others})
    figures = {}
    for y_objective, x_objective in itertools.combinations(objectives, 2):
        x, y = labels[x_objective.metric], labels[y_objective.metric]
        figure = go.Figure(layout={**_LAYOUT, "title": f"{y.text} vs {x.text}"})
        for kind in kinds:
            rows = [row for row in others if str(row.get("quantizer", "")) == kind]
            name = f"trials ({kind})" if len(kinds) > 1 else "trials"
            figure.add_trace(_scatter(rows, x, y, shown, knobs, name, {"color": _TRIAL_COLOR, "size": 7, "opacity": 0.8}))
        figure.add_trace(_scatter(
            members, x, y, shown, knobs, "Pareto front", {"color": _FRONT_COLOR, "size": 11}, note=" (on the front)"
        ))
        figure.add_trace(_scatter([reference], x, y, shown, knobs, "FP32", {"color": "black", "size": 16, "symbol": "star"}))
        _axes(figure, x, y)
        figures[f"{y_objective.metric}_vs_{x_objective.metric}"] = figure
    return figures


def overlay_plot(
    fronts: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    x: MetricLabel,
    y: MetricLabel,
    labels: Mapping[str, MetricLabel],
    knobs: Sequence[str],
) -> go.Figure:
    """Several runs' fronts on one scatter, one colour per run, each with its own FP32 reference.

    Args:
        fronts: run name -> (its reference row, its front members).
    """
    shown = shown_labels(labels, [y.key, x.key])
    figure = go.Figure(layout={**_LAYOUT, "title": f"{y.text} vs {x.text}"})
    colors = itertools.cycle(plotly.colors.qualitative.Plotly)
    for (name, (reference, members)), color in zip(fronts.items(), colors):
        figure.add_trace(_scatter(members, x, y, shown, knobs, name, {"color": color, "size": 10}, note=f" ({name})"))
        star = {"color": color, "size": 16, "symbol": "star"}
        figure.add_trace(_scatter([reference], x, y, shown, knobs, f"{name} FP32", star, note=f" ({name})"))
    _axes(figure, x, y)
    return figure


def hypervolume_plot(hypervolume: Sequence[float]) -> go.Figure:
    """The search's progress: hypervolume of the front after each finished trial (hypervolume.csv)."""
    steps = list(range(1, len(hypervolume) + 1))
    figure = go.Figure(
        go.Scatter(
            x=steps, y=list(hypervolume), mode="lines+markers", name="hypervolume",
            hovertemplate="after %{x} trials: %{y:.4f}<extra></extra>", line={"shape": "hv"},
        ),
        layout={**_LAYOUT, "title": "Hypervolume after each finished trial"},
    )
    figure.update_xaxes(title_text="trials finished (failed ones included)", tick0=1, dtick=max(1, math.ceil(len(steps) / 10)))
    figure.update_yaxes(title_text="hypervolume (objectives / FP32, reference point 2)")
    return figure


def bits_heatmap(members: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Bit width per knob (columns) of each front member (rows, smallest model first); None
    when the front has no bit widths."""
    ordered = sorted(members, key=lambda member: member["size_bytes"])
    knobs = list(dict.fromkeys(key for member in ordered for key in member if key.startswith(BITS_PREFIX)))
    if not ordered or not knobs:
        return None
    grid = [[member.get(knob, _FP32_BITS) for knob in knobs] for member in ordered]
    heatmap = go.Heatmap(
        z=grid, x=[knob[len(BITS_PREFIX):] for knob in knobs], y=[_trial_name(member) for member in ordered],
        colorscale="Viridis", texttemplate="%{z}", colorbar={"title": {"text": "weight bits"}},
        hovertemplate="%{y}, %{x}: %{z} bits<extra></extra>",
    )
    layout = {**_LAYOUT, "title": "Bit widths of the front (smallest model at the top)", "height": 160 + 32 * len(ordered)}
    figure = go.Figure(heatmap, layout=layout)
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def sensitivity_heatmap(table: SensitivityTable) -> go.Figure:
    """Damage of each layer (rows, forward order) at each (quantizer, bits) choice (columns), log-coloured.

    Damage spans orders of magnitude between the first convolution and the wide middle layers, so the
    colour is its log10 and the hover the value itself; a zero damage (clamped) or a choice the layer
    does not offer is left blank.
    """
    choices = table.choices()
    layers = list(table.layers)
    damage = [[table.layers[layer].damage.get(choice) for choice in choices] for layer in layers]
    heatmap = go.Heatmap(
        z=[[math.log10(value) if value else None for value in row] for row in damage],
        x=[f"{choice.quantizer} {choice.bits} bits" for choice in choices], y=layers,
        customdata=[[_damage_text(value) for value in row] for row in damage],
        colorscale="Viridis", colorbar={"title": {"text": "log10 damage"}},
        hovertemplate="%{y}, %{x}: damage %{customdata}<extra></extra>",
    )
    title = f"Per-layer sensitivity ({table.estimator}): damage with one layer quantized alone"
    figure = go.Figure(heatmap, layout={**_LAYOUT, "title": title, "height": 160 + 22 * len(layers)})
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def _damage_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _scatter(
    rows: Sequence[Mapping[str, Any]],
    x: MetricLabel,
    y: MetricLabel,
    shown: Sequence[MetricLabel],
    knobs: Sequence[str],
    name: str,
    marker: Mapping[str, Any],
    note: str = "",
) -> go.Scatter:
    """The rows with both values, in the labels' units, hovering their metrics and knobs."""
    placed = [row for row in rows if x.value(row.get(x.key)) is not None and y.value(row.get(y.key)) is not None]
    return go.Scatter(
        x=[x.value(row[x.key]) for row in placed], y=[y.value(row[y.key]) for row in placed],
        mode="markers", name=name, marker=dict(marker), text=hover_texts(placed, shown, knobs, note),
        hovertemplate="%{text}<extra></extra>",
    )


def _axes(figure: go.Figure, x: MetricLabel, y: MetricLabel) -> None:
    figure.update_xaxes(title_text=x.text)
    figure.update_yaxes(title_text=y.text)


def _trial_name(row: Mapping[str, Any]) -> str:
    """`trial 7`, or `fp32` for the reference row."""
    trial = row.get("trial")
    return f"trial {trial}" if isinstance(trial, int) else str(trial)
