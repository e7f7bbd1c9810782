"""Self-contained HTML page of one run, or of several runs' fronts overlaid, in a single file.

The page is interactive (Plotly figures, a sortable table of every trial) and still opens
offline, from a CI artefact, an e-mail or a laptop without network: plotly.js, the style sheet
and the table's script are inline, once per page, and nothing is loaded from anywhere.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import yaml
from plotly.offline import get_plotlyjs

from search.front_rank import recorded_front_ranks
from search.front_reasons import front_reasons
from search.report import (
    LEFT_ALIGNED,
    Front,
    bits_caption,
    front_grid,
    front_title,
    read_front,
    read_sensitivity,
    sensitivity_line,
    summarise_trials,
)
from search.report_plots import PLOT_CONFIG, bits_heatmap, hypervolume_plot, overlay_plot, pareto_plots, sensitivity_heatmap
from search.report_trials_table import TABLE_SCRIPT, TABLE_STYLE, trials_table
from search.run_dir import RunDirectory, RunDirectoryError
from search.trial_columns import knob_keys, metric_keys, metric_labels, shown_labels

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.left, td.left { text-align: left; }
tr.reference { font-weight: bold; background: #e6f4f7; }
caption { caption-side: bottom; font-size: 0.85em; color: #555; padding-top: 0.4em; }
.plot { max-width: 1100px; }
summary { cursor: pointer; font-weight: bold; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def write_html_report(run_dir: RunDirectory) -> Path:
    """Write `RUN/report.html` from the run's files; `search report` and the end of a run call it.

    Returns:
        The page's path.
    """
    return _write(run_dir.report_html, run_html(run_dir))


def write_comparison_html(run_dirs: Sequence[RunDirectory], path: str | os.PathLike) -> Path:
    """Write the overlay of several runs' fronts to `path` (it belongs to no single run)."""
    return _write(Path(path), comparison_html(run_dirs))


def run_html(run_dir: RunDirectory) -> str:
    """One run's page: timing, the front table with its FP32 reference, the Pareto scatters, the
    hypervolume curve, the front's bit widths, the per-layer sensitivities, every trial, the config (collapsed)."""
    front = read_front(run_dir)
    trials = run_dir.read_trials()
    reference, members = front.pareto["reference"], front.pareto["members"]
    metrics = metric_keys(reference)
    labels = metric_labels(metrics, [reference, *trials])
    knobs = knob_keys(trials, metrics)
    summary = summarise_trials(trials)
    timing = (
        f"{summary.trials} trials, {summary.failed} failed; trial time {summary.total_seconds:.1f} s in all, "
        f"longest {summary.longest_seconds:.1f} s"
    )
    heatmap = bits_heatmap(members)
    ranks = recorded_front_ranks(run_dir, trials, members, front.objectives)
    columns = shown_labels(labels, [objective.metric for objective in front.objectives])
    body = [
        f"<h1>{_text(front_title([front]))}</h1>",
        f"<p>{_text(timing)}</p>",
        "<h2>Front</h2>",
        _table([front]),
        _reasons(front),
        "<h2>Plots</h2>",
        "<p>Hover a point for its trial's metrics and knobs; drag to zoom, double-click to reset.</p>",
        *(_plot(figure) for figure in pareto_plots(trials, front.objectives, reference, members, labels, knobs).values()),
        _plot(hypervolume_plot(run_dir.read_hypervolume())),
        *([_plot(heatmap)] if heatmap is not None else []),
        *_sensitivity_section(run_dir),
        "<h2>Trials</h2>",
        trials_table(trials, columns, knobs, ranks),
        "<h2>Config</h2>",
        "<details><summary>config.yaml (the resolved config)</summary>",
        f"<pre>{_text(yaml.safe_dump(run_dir.read_config(), sort_keys=False))}</pre>",
        "</details>",
    ]
    return _page(front.name, body, script=TABLE_SCRIPT, style=TABLE_STYLE)


def comparison_html(run_dirs: Sequence[RunDirectory]) -> str:
    """Several runs' fronts in one table and one scatter of the first run's first two objectives.

    As in every Pareto figure, the earlier objective (the quality metric) is the y axis.
    """
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    body = [f"<h1>{_text(front_title(fronts))}</h1>", _table(fronts)]
    if len(fronts[0].objectives) >= 2:
        rows = [row for front in fronts for row in front.rows]
        metrics = list(dict.fromkeys(key for front in fronts for key in metric_keys(front.pareto["reference"])))
        labels = metric_labels(metrics, rows)
        y, x = (labels[objective.metric] for objective in fronts[0].objectives[:2])
        overlaid = {front.name: (front.pareto["reference"], front.pareto["members"]) for front in fronts}
        body.append(_plot(overlay_plot(overlaid, x, y, labels, knob_keys(rows, metrics))))
    return _page(", ".join(front.name for front in fronts), body)


def _table(fronts: Sequence[Front]) -> str:
    """The terminal table's header and cells as HTML, reference rows highlighted."""
    header, rows = front_grid(fronts)
    left = [' class="left"' if column in LEFT_ALIGNED else "" for column in header]
    head = "".join(f"<th{css}>{_text(column)}</th>" for column, css in zip(header, left))
    lines = ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for row in rows:
        cells = "".join(f"<td{css}>{_text(cell)}</td>" for cell, css in zip(row.cells, left))
        lines.append(f'<tr class="reference">{cells}</tr>' if row.reference else f"<tr>{cells}</tr>")
    caption = bits_caption(fronts)
    lines += ["</tbody>", f"<caption>{_text(caption)}</caption>" if caption else "", "</table>"]
    return "\n".join(lines)


def _reasons(front: Front) -> str:
    """Why each member is on the front (`search.front_reasons`), in the table's order."""
    members = front.rows[1:]
    items = "".join(
        f"<li>trial {_text(str(member['trial']))}: {_text(reason)}</li>"
        for member, reason in zip(members, front_reasons(members, front.objectives))
    )
    return f"<p>Why each member is on the front:</p><ul>{items}</ul>" if items else ""


def _sensitivity_section(run_dir: RunDirectory) -> list[str]:
    """The table of per-layer damage the run's sampler read, as a heatmap; one line when it read none."""
    table = read_sensitivity(run_dir)
    section = ['<h2 id="sensitivity">Per-layer sensitivity</h2>', f"<p>{_text(sensitivity_line(table))}</p>"]
    if table is not None:
        section.append(_plot(sensitivity_heatmap(table)))
    return section


def _plot(figure: go.Figure) -> str:
    """A figure as a div and the call that draws it; plotly.js itself is in the page's head."""
    return f'<div class="plot">{figure.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG)}</div>'


def _page(title: str, body: Sequence[str], script: str = "", style: str = "") -> str:
    """The document: plotly.js inline in the head, so every figure's call finds it loaded."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}{style}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        *body,
        f"<script>{script}</script>" if script else "",
        "</body></html>",
        "",
    ])


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _write(path: Path, text: str) -> Path:
    """Write the page, turning an unwritable destination into an error that names it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise RunDirectoryError(f"{path}: cannot write the report ({error.strerror})") from None
    return path
