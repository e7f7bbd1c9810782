"""The reports' per-layer sensitivity section: drawn from the table the run recorded, or one line saying there is none."""

import json
import math

import pytest
from rich.console import Console

from evaluators.layer_quantization import QuantChoice
from evaluators.sensitivity_estimators import LayerSensitivity, SensitivityTable
from report_run import make_report_run
from search.report import print_report, read_sensitivity
from search.report_html import run_html
from search.report_plots import sensitivity_heatmap
from search.run_dir import RunDirectoryError

TWO, FOUR = QuantChoice("uniform", 2), QuantChoice("uniform", 4)
TABLE = SensitivityTable(
    "hessian",
    {"probes": 4, "batches": 2},
    {
        "stem.conv": LayerSensitivity(432, 0.5, {TWO: 0.8, FOUR: 0.02}, {TWO: 1.6, FOUR: 0.04}),
        "head.linear": LayerSensitivity(2048, 0.0, {TWO: 0.0, FOUR: 0.0}, {TWO: 3.0, FOUR: 0.1}),
    },
)


@pytest.fixture
def recorded(tmp_path):
    run = make_report_run(tmp_path / "run")
    run.write_sensitivity({"cache_entry": "sensitivity-0123.pt", **TABLE.to_entry()})
    return run


def test_a_recorded_table_is_read_back_as_the_run_used_it(recorded):
    assert read_sensitivity(recorded) == TABLE


def test_the_heatmap_has_a_row_per_layer_in_forward_order_and_log_colours(recorded):
    heatmap = sensitivity_heatmap(read_sensitivity(recorded)).data[0]
    assert list(heatmap.y) == ["stem.conv", "head.linear"]
    assert list(heatmap.x) == ["uniform 2 bits", "uniform 4 bits"]
    assert heatmap.z[0] == pytest.approx((math.log10(0.8), math.log10(0.02)))
    assert list(heatmap.z[1]) == [None, None]  # zero damage has no logarithm: left blank
    assert list(heatmap.customdata[0]) == ["0.8", "0.02"]


def test_the_page_shows_the_section_with_the_layer_names_and_estimator(recorded):
    page = run_html(recorded)
    section = page[page.index('<h2 id="sensitivity">') : page.index("<h2>Trials</h2>")]
    assert "hessian (probes=4, batches=2), 2 layers x 2 choices" in section
    assert '"stem.conv"' in section and '"head.linear"' in section
    assert section.count('class="plot"') == 1


def test_a_run_without_a_table_says_so_in_one_line(tmp_path):
    run = make_report_run(tmp_path / "run")
    page = run_html(run)
    section = page[page.index('<h2 id="sensitivity">') : page.index("<h2>Trials</h2>")]
    assert "none recorded" in section and 'class="plot"' not in section
    console = Console(record=True, width=200)
    print_report(run, console)
    assert "Per-layer sensitivities: none recorded" in console.export_text()


def test_the_terminal_report_names_the_estimator(recorded):
    console = Console(record=True, width=200)
    print_report(recorded, console)
    assert "Per-layer sensitivities: hessian (probes=4, batches=2), 2 layers x 2 choices" in console.export_text()


def test_a_damaged_record_is_an_error_naming_the_file(recorded):
    (recorded.path / "sensitivity.json").write_text(json.dumps({"estimator": "hessian"}))
    with pytest.raises(RunDirectoryError, match="sensitivity.json: corrupt"):
        read_sensitivity(recorded)
