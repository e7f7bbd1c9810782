"""Self-contained HTML page of one run, or of several runs' fronts overlaid, in a single file.

Plots are embedded as PNG data URIs and the style sheet is inline, so the page opens offline
(from a CI artefact, an e-mail, a laptop without network) and loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import yaml
from matplotlib.figure import Figure

from search.report import LEFT_ALIGNED, Front, bits_caption, front_grid, front_title, read_front, summarise_trials
from search.run_dir import RunDirectory, RunDirectoryError
from search.tensorboard import front_figures, overlay_figure


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.left, td.left { text-align: left; }
tr.reference { font-weight: bold; background: #e6f4f7; }
caption { caption-side: bottom; font-size: 0.85em; color: #555; padding-top: 0.4em; }
figure { display: inline-block; margin: 0.5em; }
figcaption { font-size: 0.85em; color: #555; }
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
    """One run's page: timing, the front table with its FP32 reference, every Pareto figure, the config."""
    front = read_front(run_dir)
    trials = run_dir.read_trials()
    config = run_dir.read_config()
    pareto = front.pareto
    summary = summarise_trials(trials)
    timing = (
        f"{summary.trials} trials, {summary.failed} failed; trial time {summary.total_seconds:.1f} s in all, "
        f"longest {summary.longest_seconds:.1f} s"
    )
    figures = front_figures(trials, front.objectives, pareto["reference"], pareto["members"])
    body = [
        f"<h1>{_text(front_title([front]))}</h1>",
        f"<p>{_text(timing)}</p>",
        "<h2>Front</h2>",
        _table([front]),
        "<h2>Plots</h2>",
        *(_figure(tag, figure) for tag, figure in figures.items()),
        "<h2>Config</h2>",
        f"<pre>{_text(yaml.safe_dump(config, sort_keys=False))}</pre>",
    ]
    return _page(front.name, body)


def comparison_html(run_dirs: Sequence[RunDirectory]) -> str:
    """Several runs' fronts in one table and one scatter of the first run's first two objectives.

    As in every Pareto figure, the earlier objective (the quality metric) is the y axis.
    """
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    body = [f"<h1>{_text(front_title(fronts))}</h1>", _table(fronts)]
    if len(fronts[0].objectives) >= 2:
        y, x = (objective.metric for objective in fronts[0].objectives[:2])
        overlay = overlay_figure({f.name: (f.pareto["reference"], f.pareto["members"]) for f in fronts}, x, y)
        body.append(_figure(f"fronts/{y}_vs_{x}", overlay))
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


def _figure(tag: str, figure: Figure) -> str:
    """A matplotlib figure as an inline PNG, captioned with its TensorBoard tag."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_text(tag)}">'
        f"<figcaption>{_text(tag)}</figcaption></figure>"
    )


def _page(title: str, body: Sequence[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head><body>",
        *body,
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
