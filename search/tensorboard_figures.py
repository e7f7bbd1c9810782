"""The Pareto figures TensorBoard shows as images: HParams scatter plots cannot highlight a front
or mark the reference.

TensorBoard shows images as cards a few hundred pixels wide, so text is drawn large for its size
and values are in the units of `search.trial_columns` (EER in %, sizes in kB or MB).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from search.pareto import Objective
from search.trial_columns import BITS_PREFIX, MetricLabel, metric_keys, metric_labels

_FP32_BITS = 32
_COMPLETE = "complete"
_SIZE = "size_bytes"
_FIGSIZE = (8.0, 6.0)
_LABEL_SIZE = 14
_TEXT_SIZE = 12
_NOTE_SIZE = 10


def front_figures(
    trials: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    members: Sequence[Mapping[str, Any]],
) -> dict[str, Figure]:
    """Pareto scatter per pair of objectives and the front's bit-width heatmap, keyed by tag.

    In each pair the earlier objective (the quality metric, as configs list it first) is the y axis.

    Returns:
        `pareto/<y>_vs_<x>` for each pair, `quality/<q>_vs_size_bytes_by_quantizer` (q: the first
        objective other than size), and `front/bits_heatmap` when the front has bit widths.
    """
    complete = [row for row in trials if row.get("status") == _COMPLETE]
    labels = metric_labels(metric_keys(reference), [reference, *trials])
    front_trials = {member["trial"] for member in members}
    figures = {
        f"pareto/{y.metric}_vs_{x.metric}": _pareto_figure(
            complete, front_trials, reference, labels[x.metric], labels[y.metric]
        )
        for y, x in itertools.combinations(objectives, 2)
    }
    quality = next((objective for objective in objectives if objective.metric != _SIZE), None)
    if quality is not None and complete:
        figures[f"quality/{quality.metric}_vs_{_SIZE}_by_quantizer"] = _quantizer_figure(
            complete, labels[_SIZE], labels[quality.metric]
        )
    ordered = sorted(members, key=lambda member: member[_SIZE])
    knobs = list(dict.fromkeys(key for member in ordered for key in _bits(member)))
    if ordered and knobs:
        figures["front/bits_heatmap"] = _bits_heatmap(ordered, knobs)
    return figures


def _bits(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key.startswith(BITS_PREFIX)}


def _uniform_bits(row: Mapping[str, Any]) -> int | None:
    """The shared bit width when every bit-width knob of the row is equal: a uniform baseline."""
    widths = set(_bits(row).values())
    return int(widths.pop()) if len(widths) == 1 else None


def _pareto_figure(
    complete: Sequence[Mapping[str, Any]],
    front_trials: set[Any],
    reference: Mapping[str, Any],
    x: MetricLabel,
    y: MetricLabel,
) -> Figure:
    """All completed trials in grey, the front in colour with trial numbers, FP32 and uniform baselines marked."""
    figure, axes = _new_axes()
    points = _points(complete, x, y)
    others = [(px, py) for row, px, py in points if row["trial"] not in front_trials]
    baselines = [(px, py, bits) for row, px, py in points if (bits := _uniform_bits(row)) is not None]
    if others:
        axes.scatter(*zip(*others), color="0.7", s=30, label="trials")
    front = [(row, px, py) for row, px, py in points if row["trial"] in front_trials]
    if front:
        axes.scatter([p[1] for p in front], [p[2] for p in front], color="tab:red", s=50, zorder=3, label="Pareto front")
        for index, (row, px, py) in enumerate(front):
            # alternate above and below: front points close on one axis would print over each other
            offset = (5, 5) if index % 2 == 0 else (5, -14)
            axes.annotate(str(row["trial"]), (px, py), textcoords="offset points", xytext=offset, fontsize=_NOTE_SIZE)
    if baselines:
        axes.scatter(
            [p[0] for p in baselines], [p[1] for p in baselines],
            facecolors="none", edgecolors="tab:blue", marker="s", s=110, zorder=4, label="uniform bits",
        )
        for px, py, bits in baselines:
            axes.annotate(  # left of the point: trial numbers are right of it
                f"{bits}b", (px, py), textcoords="offset points", xytext=(-8, 4), ha="right",
                fontsize=_NOTE_SIZE, color="tab:blue",
            )
    for _, px, py in _points([reference], x, y):
        axes.scatter([px], [py], marker="*", color="black", s=220, zorder=5, label="FP32")
    _finish(figure, axes, x, y)
    return figure


def _quantizer_figure(complete: Sequence[Mapping[str, Any]], size: MetricLabel, quality: MetricLabel) -> Figure:
    """Quality against size, one colour per quantizer family (the `quantizer` column of the trials)."""
    figure, axes = _new_axes()
    kinds = sorted({str(row.get("quantizer", "unknown")) for row in complete})
    for index, kind in enumerate(kinds):
        points = _points([row for row in complete if str(row.get("quantizer", "unknown")) == kind], size, quality)
        axes.scatter([p[1] for p in points], [p[2] for p in points], color=f"C{index}", s=36, label=kind)
    _finish(figure, axes, size, quality)
    return figure


def _new_axes() -> tuple[Figure, Any]:
    figure = Figure(figsize=_FIGSIZE, dpi=100)
    axes = figure.add_subplot()
    axes.tick_params(labelsize=_TEXT_SIZE)
    return figure, axes


def _points(
    rows: Sequence[Mapping[str, Any]], x: MetricLabel, y: MetricLabel
) -> list[tuple[Mapping[str, Any], float, float]]:
    """Each row with both values finite, as (row, x, y) in the labels' units; failed or partial rows cannot be placed."""
    points = [(row, x.value(row.get(x.key)), y.value(row.get(y.key))) for row in rows]
    return [(row, px, py) for row, px, py in points if px is not None and py is not None]


def _finish(figure: Figure, axes: Any, x: MetricLabel, y: MetricLabel) -> None:
    axes.set_xlabel(x.text, fontsize=_LABEL_SIZE)
    axes.set_ylabel(y.text, fontsize=_LABEL_SIZE)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=_TEXT_SIZE, framealpha=0.85)
    figure.tight_layout()


def _bits_heatmap(members: Sequence[Mapping[str, Any]], knobs: Sequence[str]) -> Figure:
    """Bit width per knob (columns) for each front member (rows, smallest model first)."""
    grid = np.array([[float(member.get(knob, _FP32_BITS)) for knob in knobs] for member in members])
    figure = Figure(figsize=(2.0 + 1.1 * len(knobs), 1.8 + 0.5 * len(members)), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(grid, cmap="viridis", aspect="auto")
    middle = (grid.min() + grid.max()) / 2
    for (row, column), bits in np.ndenumerate(grid):
        color = "black" if bits > middle else "white"
        axes.text(column, row, f"{bits:g}", ha="center", va="center", fontsize=_TEXT_SIZE, color=color)
    labels = [knob[len(BITS_PREFIX):] for knob in knobs]
    axes.set_xticks(range(len(knobs)), labels, rotation=45, ha="right", fontsize=_TEXT_SIZE)
    axes.set_yticks(range(len(members)), [f"trial {member['trial']}" for member in members], fontsize=_TEXT_SIZE)
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label("weight bits", fontsize=_TEXT_SIZE)
    figure.tight_layout()
    return figure
