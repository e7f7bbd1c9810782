"""The HTML report's table of every trial: sortable by any column, the front marked and filterable.

Cells show values in the units of `search.trial_columns`; each carries its raw value in
`data-sort`, so the page's script sorts numbers as numbers (and `10` after `9`) whatever the
display. The script is plain DOM code inline in the page: the report loads nothing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from search.front_rank import FRONT_RANK
from search.trial_columns import MetricLabel, finite

TABLE_ID = "trials"
FRONT_ONLY_ID = "front-only"
FRONT_MARK = "\u2605"
"""Content of the `front` cell of a member of the front."""

TABLE_STYLE = """
.scroll { overflow-x: auto; max-width: 100%; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
table.sortable tr.front td { background: #fdecea; }
table.sortable td { white-space: nowrap; }
body.front-only table.sortable tbody tr:not(.front) { display: none; }
"""

TABLE_SCRIPT = """
(function () {
  function key(cell) {
    var text = cell.getAttribute("data-sort");
    var number = text === "" ? NaN : Number(text);
    return {empty: text === "", number: number, text: text};
  }
  function compare(a, b) {
    if (a.empty || b.empty) { return a.empty - b.empty; }
    if (!isNaN(a.number) && !isNaN(b.number)) { return a.number - b.number; }
    return a.text.localeCompare(b.text);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.querySelectorAll("thead th");
    headers.forEach(function (header, column) {
      header.addEventListener("click", function () {
        var descending = header.getAttribute("aria-sort") === "ascending";
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var a = key(r.cells[column]), b = key(s.cells[column]);
          var order = compare(a, b);
          return descending && !a.empty && !b.empty ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var toggle = document.getElementById("front-only");
  if (toggle) {
    toggle.addEventListener("change", function () {
      document.body.classList.toggle("front-only", toggle.checked);
    });
  }
})();
"""
"""Click a header to sort by it (again to reverse; empty cells stay last); the checkbox hides
the rows off the front."""


def trials_table(
    trials: Sequence[Mapping[str, Any]],
    labels: Sequence[MetricLabel],
    knobs: Sequence[str],
    ranks: Sequence[int | None],
) -> str:
    """The table of `trials` with the checkbox that filters it to the front.

    Args:
        trials: The rows of trials.jsonl, in order.
        labels: The metric columns, in order.
        knobs: The knob columns, in order.
        ranks: Each trial's `search.front_rank.front_ranks`.
    """
    header = ["front", "front rank", "trial", "status", *(label.text for label in labels), *knobs, "error"]
    head = "".join(f'<th scope="col">{html.escape(column)}</th>' for column in header)
    lines = [
        f'<p><label><input type="checkbox" id="{FRONT_ONLY_ID}"> show only the front ({FRONT_MARK})</label>; '
        "click a column title to sort by it.</p>",
        f'<div class="scroll"><table class="sortable" id="{TABLE_ID}">',
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
    ]
    for row, rank in zip(trials, ranks):
        on_front = rank == FRONT_RANK
        cells = [
            _cell(FRONT_MARK if on_front else "", 1 if on_front else 0),
            _cell("" if rank is None else str(rank), rank),
            _cell(str(row.get("trial", "")), row.get("trial")),
            _cell(str(row.get("status", "")), row.get("status")),
            *(_cell(label.number(row.get(label.key)), row.get(label.key)) for label in labels),
            *(_cell("" if row.get(knob) is None else str(row[knob]), row.get(knob)) for knob in knobs),
            _cell(str(row.get("error") or ""), row.get("error")),
        ]
        lines.append(f'<tr class="front">{"".join(cells)}</tr>' if on_front else f"<tr>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table></div>"]
    return "\n".join(lines)


def _cell(text: str, sort: Any) -> str:
    """A cell showing `text`, sorted by `sort` (its raw value: numbers compare as numbers)."""
    number = finite(sort)
    key = repr(number) if number is not None else "" if sort is None else str(sort)
    return f'<td data-sort="{html.escape(key, quote=True)}">{html.escape(text)}</td>'
