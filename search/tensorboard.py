"""TensorBoard view of a run directory, rebuilt from its files so it never disagrees with them.

Layout under `RunDirectory.tensorboard_dir` (each folder is one TensorBoard run)::

    hparams/             HParams experiment summary: every knob and metric
    hparams/trial-0007/  one session per finished trial: knob values, metric scalars, status
    search/              progress scalars per finished trial and the Pareto figures

The HParams summaries come from `tensorboard.plugins.hparams.summary_v2`'s `*_pb` helpers,
the only ones that work without TensorFlow (`hparams.api` and `hparams.summary` import it);
the session-end summary that carries a trial's success or failure has no TensorFlow-free
helper, so it is built from the plugin's own protobuf messages.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_api
from torch.utils.tensorboard import SummaryWriter

from search.front import front_eligible
from search.pareto import Objective, pareto_front
from search.run_dir import RunDirectory

HPARAMS_RUN = "hparams"
SEARCH_RUN = "search"
SIZE_BUDGET_DIVISORS = (4, 6, 8)
"""Size budgets of the best-quality curves, as fractions 1/d of the FP32 reference size."""

_BITS_PREFIX = "bits."
_FP32_BITS = 32
_MISSING_TEXT = "none"
_NON_METRIC_KEYS = ("trial", "status", "error")
_COMPLETE = "complete"
_SIZE = "size_bytes"


def write_tensorboard(run_dir: RunDirectory) -> Path:
    """(Re)write the run's TensorBoard folder from its reference, trials, front and hypervolume files.

    The folder is cleared first, so calling this after every trial (or again after the run)
    leaves exactly one session per trial and one point per step.

    Returns:
        The TensorBoard folder, ready for `tensorboard --logdir`.
    """
    reference = run_dir.read_reference()
    trials = run_dir.read_trials()
    pareto = run_dir.read_pareto()
    objectives = [Objective.parse(item) for item in pareto["objectives"]]
    hypervolume = run_dir.read_hypervolume()
    metrics = [key for key in reference if key not in _NON_METRIC_KEYS] + ["seconds"]
    knobs = _knob_keys(trials, metrics)

    root = run_dir.tensorboard_dir
    shutil.rmtree(root, ignore_errors=True)
    _write_hparams(root / HPARAMS_RUN, trials, knobs, metrics)
    with SummaryWriter(str(root / SEARCH_RUN)) as writer:
        _write_progress(writer, trials, objectives, reference, hypervolume)
        for tag, figure in front_figures(trials, objectives, reference, pareto["members"]).items():
            writer.add_figure(tag, figure, len(trials))
    return root


def _knob_keys(trials: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[str]:
    """Every searched knob in order of first appearance: whatever a row holds besides metrics."""
    excluded = {*metrics, *_NON_METRIC_KEYS}
    return list(dict.fromkeys(key for row in trials for key in row if key not in excluded))


def _hparam_name(knob: str) -> str:
    """`bits.stem` -> `bits/stem`: TensorBoard groups names by slash."""
    return knob.replace(".", "/")


def _hparam_value(value: Any) -> bool | float | str | None:
    """A knob value as an HParams value; lists and other JSON become their JSON text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return json.dumps(value)


def _knob_table(trials: Sequence[Mapping[str, Any]], knobs: Sequence[str]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Each trial's value for every knob, and the HParam declaring each knob's domain.

    The dashboard renders sessions with differing keys poorly, so every trial gets every knob:
    a missing bit width is FP32 (the group is not quantized); any other column with gaps or
    mixed types becomes text with "none" for the gaps.
    """
    table: list[dict[str, Any]] = [{} for _ in trials]
    declared = []
    for knob in knobs:
        column = [_hparam_value(row.get(knob)) for row in trials]
        if knob.startswith(_BITS_PREFIX):
            column = [float(_FP32_BITS) if value is None else value for value in column]
        if None in column or len({type(value) for value in column}) > 1:
            column = [_MISSING_TEXT if value is None else str(value) for value in column]
        name = _hparam_name(knob)
        for values, value in zip(table, column):
            values[name] = value
        declared.append(hparams_api.HParam(name, hparams_api.Discrete(set(column))))
    return table, declared


def _write_hparams(
    parent: Path, trials: Sequence[Mapping[str, Any]], knobs: Sequence[str], metrics: Sequence[str]
) -> None:
    """One experiment summary in `parent`, one session per trial in its own subfolder.

    A completed trial's session holds its metrics as scalars (step 0) and ends as a success;
    a failed trial's session holds its knobs only and ends as a failure, so the dashboard's
    status filter can show or hide it.
    """
    table, declared = _knob_table(trials, knobs)
    experiment = hparams_api.hparams_config_pb(declared, [hparams_api.Metric(metric) for metric in metrics])
    with SummaryWriter(str(parent)) as writer:
        writer.file_writer.add_summary(experiment)
    for row, knob_values in zip(trials, table):
        complete = row.get("status") == _COMPLETE
        with SummaryWriter(str(parent / f"trial-{row['trial']:04d}")) as writer:
            writer.file_writer.add_summary(hparams_api.hparams_pb(knob_values, trial_id=str(row["trial"])))
            if complete:
                for metric in metrics:
                    value = _finite(row.get(metric))
                    if value is not None:
                        writer.add_scalar(metric, value, 0)
            writer.file_writer.add_summary(_session_end(api_pb2.STATUS_SUCCESS if complete else api_pb2.STATUS_FAILURE))


def _session_end(status: int) -> summary_pb2.Summary:
    """The HParams session-end summary carrying a trial's status."""
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary


def _finite(value: Any) -> float | None:
    """A metric as a finite float, or None (failed trials store None for NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _write_progress(
    writer: SummaryWriter,
    trials: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    hypervolume: Sequence[float],
) -> None:
    """Hypervolume, front size and best quality under size budgets after each finished trial.

    The step is the number of trials finished (hypervolume.csv's `trials_finished`), counting
    failed ones, so every curve shares the hypervolume's x axis.
    """
    for step, value in enumerate(hypervolume, start=1):
        writer.add_scalar("hypervolume", value, step)
    quality = next((objective for objective in objectives if objective.metric != _SIZE), None)
    complete: list[Mapping[str, Any]] = []
    for step, row in enumerate(trials, start=1):
        if front_eligible(row):  # complete and feasible, as the front's members
            complete.append(row)
        writer.add_scalar("front_size", len(pareto_front(complete, objectives)), step)
        if quality is None:
            continue
        for divisor in SIZE_BUDGET_DIVISORS:
            best = _best_within(complete, quality, reference[_SIZE] / divisor)
            if best is not None:
                writer.add_scalar(f"best_{quality.metric}/size_le_fp32_div_{divisor}", best, step)


def _best_within(rows: Sequence[Mapping[str, Any]], quality: Objective, size_budget: float) -> float | None:
    """The best value of the quality objective among rows no larger than the budget."""
    values = [
        value
        for row in rows
        if (size := _finite(row.get(_SIZE))) is not None and size <= size_budget
        and (value := _finite(row.get(quality.metric))) is not None
    ]
    if not values:
        return None
    return max(values) if quality.maximise else min(values)


def _bits(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key.startswith(_BITS_PREFIX)}


def _uniform_bits(row: Mapping[str, Any]) -> int | None:
    """The shared bit width when every bit-width knob of the row is equal: a uniform baseline."""
    widths = set(_bits(row).values())
    return int(widths.pop()) if len(widths) == 1 else None


def front_figures(
    trials: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    members: Sequence[Mapping[str, Any]],
) -> dict[str, Figure]:
    """Pareto scatter per pair of objectives and the front's bit-width heatmap, keyed by tag.

    Shared by TensorBoard and the HTML report so both show the same pictures. In each pair the
    earlier objective (the quality metric, as configs list it first) is the y axis.

    HParams scatter plots cannot highlight a front or mark the reference, hence figures.

    Returns:
        `pareto/<y>_vs_<x>` for each pair, `quality/<q>_vs_size_bytes_by_quantizer` (q: the first
        objective other than size), and `front/bits_heatmap` when the front has bit widths.
    """
    complete = [row for row in trials if row.get("status") == _COMPLETE]
    front_trials = {member["trial"] for member in members}
    figures = {
        f"pareto/{y_objective.metric}_vs_{x_objective.metric}": _pareto_figure(
            complete, front_trials, reference, x_objective.metric, y_objective.metric
        )
        for y_objective, x_objective in itertools.combinations(objectives, 2)
    }
    quality = next((objective for objective in objectives if objective.metric != _SIZE), None)
    if quality is not None and complete:
        figures[f"quality/{quality.metric}_vs_{_SIZE}_by_quantizer"] = _quantizer_figure(complete, quality.metric)
    ordered = sorted(members, key=lambda member: member[_SIZE])
    knobs = list(dict.fromkeys(key for member in ordered for key in _bits(member)))
    if ordered and knobs:
        figures["front/bits_heatmap"] = _bits_heatmap(ordered, knobs)
    return figures


def overlay_figure(
    fronts: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]], x: str, y: str
) -> Figure:
    """Several runs' fronts on one scatter, one colour per run, each with its own FP32 reference.

    Args:
        fronts: run name -> (its reference row, its front members).
        x, y: the metrics on the axes.
    """
    figure, axes = _new_axes()
    for index, (name, (reference, members)) in enumerate(fronts.items()):
        color = f"C{index}"
        _plot_front(axes, members, x, y, color, name)
        _plot_reference(axes, reference, x, y, color, f"{name} FP32")
    _finish(figure, axes, x, y)
    return figure


def _pareto_figure(
    complete: Sequence[Mapping[str, Any]], front_trials: set[Any], reference: Mapping[str, Any], x: str, y: str
) -> Figure:
    """All completed trials in grey, the front in colour with trial numbers, FP32 and uniform baselines marked."""
    figure, axes = _new_axes()
    points = _points(complete, x, y)
    others = [(px, py) for row, px, py in points if row["trial"] not in front_trials]
    baselines = [(px, py, bits) for row, px, py in points if (bits := _uniform_bits(row)) is not None]
    if others:
        axes.scatter(*zip(*others), color="0.7", s=18, label="trials")
    _plot_front(axes, [row for row in complete if row["trial"] in front_trials], x, y, "tab:red", "Pareto front")
    if baselines:
        axes.scatter(
            [p[0] for p in baselines], [p[1] for p in baselines],
            facecolors="none", edgecolors="tab:blue", marker="s", s=70, zorder=4, label="uniform bits",
        )
        for px, py, bits in baselines:
            axes.annotate(
                f"{bits}b", (px, py), textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:blue"
            )
    _plot_reference(axes, reference, x, y, "black", "FP32")
    _finish(figure, axes, x, y)
    return figure


def _quantizer_figure(complete: Sequence[Mapping[str, Any]], quality: str) -> Figure:
    """Quality against size, one colour per quantizer family (the `quantizer` column of the trials)."""
    figure, axes = _new_axes()
    kinds = sorted({str(row.get("quantizer", "unknown")) for row in complete})
    for index, kind in enumerate(kinds):
        points = _points([row for row in complete if str(row.get("quantizer", "unknown")) == kind], _SIZE, quality)
        axes.scatter([p[1] for p in points], [p[2] for p in points], color=f"C{index}", s=22, label=kind)
    _finish(figure, axes, _SIZE, quality)
    return figure


def _new_axes() -> tuple[Figure, Any]:
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    return figure, figure.add_subplot()


def _points(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> list[tuple[Mapping[str, Any], float, float]]:
    """Each row with both coordinates finite, as (row, x, y); failed or partial rows cannot be placed."""
    points = [(row, _finite(row.get(x)), _finite(row.get(y))) for row in rows]
    return [(row, px, py) for row, px, py in points if px is not None and py is not None]


def _plot_front(axes: Any, members: Sequence[Mapping[str, Any]], x: str, y: str, color: str, label: str) -> None:
    """Front members as coloured points labelled with their trial numbers."""
    points = _points(members, x, y)
    if not points:
        return
    axes.scatter([p[1] for p in points], [p[2] for p in points], color=color, s=30, zorder=3, label=label)
    for row, px, py in points:
        axes.annotate(str(row["trial"]), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)


def _plot_reference(axes: Any, reference: Mapping[str, Any], x: str, y: str, color: str, label: str) -> None:
    """The FP32 reference as a star, when it has both metrics."""
    for _, px, py in _points([reference], x, y):
        axes.scatter([px], [py], marker="*", color=color, s=120, zorder=5, label=label)


def _finish(figure: Figure, axes: Any, x: str, y: str) -> None:
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()


def _bits_heatmap(members: Sequence[Mapping[str, Any]], knobs: Sequence[str]) -> Figure:
    """Bit width per knob (columns) for each front member (rows, smallest model first)."""
    grid = np.array([[float(member.get(knob, _FP32_BITS)) for knob in knobs] for member in members])
    figure = Figure(figsize=(1.0 + 0.8 * len(knobs), 1.2 + 0.35 * len(members)), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(grid, cmap="viridis", aspect="auto")
    middle = (grid.min() + grid.max()) / 2
    for (row, column), bits in np.ndenumerate(grid):
        color = "black" if bits > middle else "white"
        axes.text(column, row, f"{bits:g}", ha="center", va="center", fontsize=7, color=color)
    labels = [knob[len(_BITS_PREFIX):] for knob in knobs]
    axes.set_xticks(range(len(knobs)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(members)), [f"trial {member['trial']}" for member in members], fontsize=8)
    figure.colorbar(image, ax=axes, label="weight bits")
    figure.tight_layout()
    return figure


PROJECTOR_RUN = "projector"


def write_embedding_projector(run_dir: RunDirectory, embeddings: np.ndarray, speakers: Sequence[str], tag: str) -> Path:
    """Test-set speaker embeddings of one model for TensorBoard's projector, speaker as metadata.

    Written beside the runs `write_tensorboard` makes; call it after that, which clears the folder.
    """
    folder = run_dir.tensorboard_dir / PROJECTOR_RUN
    with SummaryWriter(str(folder)) as writer:
        writer.add_embedding(embeddings, metadata=list(speakers), tag=tag)
    return folder
