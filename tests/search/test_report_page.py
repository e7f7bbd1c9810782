"""What report.html holds: figures in units with every knob and metric on hover, the hypervolume
curve, every trial with the front marked, the config collapsed, and nothing loaded from the network."""

import re

import pytest
from plotly.offline import get_plotlyjs

from report_run import FRONT, HYPERVOLUME, REFERENCE, TRIALS, make_report_run
from search.front_rank import front_ranks
from search.pareto import Objective
from search.report_html import write_html_report
from search.report_plots import bits_heatmap, hypervolume_plot, pareto_plots
from search.report_trials_table import trials_table
from search.trial_columns import knob_keys, metric_keys, metric_labels, shown_labels

OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]
METRICS = metric_keys(REFERENCE)
LABELS = metric_labels(METRICS, [REFERENCE, *TRIALS])
KNOBS = knob_keys(TRIALS, METRICS)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = make_report_run(tmp_path_factory.mktemp("page") / "run")
    return write_html_report(run).read_text(encoding="utf-8")


def test_page_inlines_plotly_once_and_refers_to_nothing_remote(page):
    assert page.count(get_plotlyjs()) == 1
    ours = page.replace(get_plotlyjs(), "")  # plotly.js names URLs of features the page does not use (maps)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", ours)
    assert "<link" not in ours and "<script src" not in ours


def test_scatter_axes_name_units_and_the_latency_target():
    figures = pareto_plots(TRIALS, OBJECTIVES, REFERENCE, FRONT, LABELS, KNOBS)
    assert list(figures) == ["eer_vs_size_bytes", "eer_vs_latency_ms", "size_bytes_vs_latency_ms"]
    layout = figures["eer_vs_latency_ms"].layout
    assert (layout.xaxis.title.text, layout.yaxis.title.text) == ("latency on cortex-a72 (ms)", "EER (%)")
    front = next(trace for trace in figures["eer_vs_size_bytes"].data if trace.name == "Pareto front")
    assert list(front.x) == [row["size_bytes"] / 1e3 for row in FRONT]
    assert list(front.y) == pytest.approx([row["eer"] * 100 for row in FRONT])
    assert figures["eer_vs_size_bytes"].layout.xaxis.title.text == "size (kB)"


def test_hover_lists_every_metric_once_and_every_knob_but_no_bookkeeping():
    figure = pareto_plots(TRIALS, OBJECTIVES, REFERENCE, FRONT, LABELS, KNOBS)["eer_vs_size_bytes"]
    front = next(trace for trace in figure.data if trace.name == "Pareto front")
    hover = front.text[0].split("<br>")
    assert hover[0] == "<b>trial 0</b> (on the front)"
    assert hover[1:] == [
        "EER: 5.1 %", "size: 200 kB", "latency on cortex-a72: 3 ms", "minDCF: 0.6", "compression: 4 x",
        "latency on x86-avx2: 0.9 ms", "peak memory: 0.5 MB", "trial time: 1.5 s", "bits.stem: 8", "bits.head: 8",
    ]


def test_hypervolume_curve_is_hypervolume_csv_per_finished_trial():
    (trace,) = hypervolume_plot(HYPERVOLUME).data
    assert list(trace.x) == [1, 2, 3, 4, 5] and list(trace.y) == HYPERVOLUME


def test_bits_heatmap_rows_are_the_front_from_the_smallest_model():
    (trace,) = bits_heatmap(FRONT).data
    assert list(trace.y) == ["trial 4", "trial 1", "trial 0"]
    assert [list(row) for row in trace.z] == [[3, 3], [4, 4], [8, 8]]


def test_trials_table_marks_the_front_and_sorts_on_raw_values():
    ranks = front_ranks(TRIALS, FRONT, OBJECTIVES[:2])
    table = trials_table(TRIALS, shown_labels(LABELS, ["eer", "size_bytes"]), KNOBS, ranks)
    body = table[table.index("<tbody>"):]
    rows = re.findall(r"<tr( class=\"front\")?>(.*?)</tr>", body)
    assert len(rows) == len(TRIALS)
    cells = [re.findall(r'<td data-sort="([^"]*)">([^<]*)</td>', row) for _, row in rows]
    on_front = {str(member["trial"]) for member in FRONT}
    assert [bool(css) for css, _ in rows] == [cell[2][1] in on_front for cell in cells]
    assert [cell[0][1] for cell in cells] == ["\u2605" if cell[2][1] in on_front else "" for cell in cells]
    first = cells[0]  # trial 0: rank 1, EER cell shown in % and sorted by the raw fraction
    assert first[1] == ("1.0", "1") and first[4] == ("0.051", "5.1")
    failed = cells[2]
    assert failed[3] == ("failed", "failed") and failed[4] == ("", "") and failed[1] == ("", "")
    assert cells[3][1] == ("2.0", "2")  # trial 3 is on the front once the front is removed
    header = re.findall(r'<th scope="col">([^<]*)</th>', table)
    assert header[:6] == ["front", "front rank", "trial", "status", "EER (%)", "size (kB)"]
    assert {"node", "attempts", "steps", "feasible"}.isdisjoint(header)


def test_page_has_every_trial_why_members_are_on_the_front_and_the_config_collapsed(page):
    assert page.count("<tr class=\"front\">") == len(FRONT)
    reasons = re.findall(r"<li>trial (\d+): ([^<]+)</li>", page)
    assert sorted(trial for trial, _ in reasons) == sorted(str(member["trial"]) for member in FRONT)
    details = re.search(r"<details><summary>[^<]*</summary>\s*<pre>(.*?)</pre>\s*</details>", page, re.S)
    assert details and "name: synthetic &lt;test&gt;" in details.group(1)
    assert page.count('class="plotly-graph-div"') == 3  # one scatter (two objectives), hypervolume, bits
