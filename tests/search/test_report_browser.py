"""report.html in a real browser: the Plotly figures render offline, the page logs no error, and
the trials table sorts and filters.

Headless Chromium runs with name resolution disabled, so the page renders only if it needs
nothing from the network. `make test` installs Debian's `chromium` when apt-get is available.
"""

import re
import shutil
import subprocess

import pytest

from report_run import FRONT, HYPERVOLUME, TRIALS, make_report_run
from search.report_html import write_html_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`make test` installs it with apt-get where it can)"
)
FIGURES = 3
"""The synthetic run's figures: one Pareto scatter (two objectives), the hypervolume, the bits heatmap."""
POINTS = len([row for row in TRIALS if "eer" in row]) + 1 + len(HYPERVOLUME)
"""Markers drawn: every completed trial and the FP32 reference on the scatter, one per hypervolume value."""

_INTERACT = """<script>
window.addEventListener("load", function () {
  var rows = function () { return Array.from(document.querySelectorAll("#trials tbody tr")); };
  var order = function (list) { return list.map(function (row) { return row.cells[2].textContent; }).join(","); };
  var header = Array.from(document.querySelectorAll("#trials thead th")).find(function (th) {
    return th.textContent === "EER (%)";
  });
  header.click();
  document.body.setAttribute("data-ascending", order(rows()));
  header.click();
  document.body.setAttribute("data-descending", order(rows()));
  var box = document.getElementById("front-only");
  box.checked = true;
  box.dispatchEvent(new Event("change"));
  document.body.setAttribute("data-visible", order(rows().filter(function (row) { return row.offsetParent !== null; })));
});
</script>
</body>"""
"""Appended to a copy of the page: sorts by EER twice and ticks "show only the front", writing
the trial order after each step where --dump-dom shows it."""


def _chromium(page, profile) -> subprocess.CompletedProcess:
    """The DOM of `page` once its scripts ran (stdout), and the browser's log with the page's console (stderr)."""
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
        "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    return write_html_report(make_report_run(tmp_path_factory.mktemp("browser") / "run"))


def test_plots_render_offline_without_console_errors(page, tmp_path):
    result = _chromium(page, tmp_path / "profile")
    assert result.stdout.count('class="plot-container plotly"') == FIGURES
    assert result.stdout.count('class="main-svg"') >= FIGURES
    assert result.stdout.count('class="point"') == POINTS and 'class="hm"' in result.stdout  # markers and heatmap drew
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_trials_table_sorts_by_raw_values_and_filters_to_the_front(page, tmp_path):
    interactive = tmp_path / "interactive.html"
    interactive.write_text(page.read_text(encoding="utf-8").replace("</body>", _INTERACT, 1), encoding="utf-8")
    body = re.search(r"<body([^>]*)>", _chromium(interactive, tmp_path / "profile").stdout).group(1)
    state = dict(re.findall(r'data-(\w+)="([^"]*)"', body))
    by_eer = [str(row["trial"]) for row in sorted((row for row in TRIALS if "eer" in row), key=lambda row: row["eer"])]
    failed = [str(row["trial"]) for row in TRIALS if "eer" not in row]
    assert state["ascending"].split(",") == by_eer + failed
    assert state["descending"].split(",") == by_eer[::-1] + failed  # empty cells stay last
    front = {str(member["trial"]) for member in FRONT}
    assert state["visible"].split(",") == [trial for trial in by_eer[::-1] if trial in front]
