import csv
import io
import json

import pytest

from search.cli import main
from search.report import read_front, reason_lines, tensorboard_argv
from search.report_html import write_html_report
from report_run import FRONT, make_report_run
from search.run_dir import RunDirectory, RunDirectoryError

@pytest.fixture
def run(tmp_path) -> RunDirectory:
    return make_report_run(tmp_path / "run-a")


def test_json_round_trips_to_pareto_members(run, capsys):
    assert main(["report", str(run.path), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run.path / "pareto.json").read_text())
    assert printed["members"] == FRONT


def test_csv_has_reference_first_then_every_key_of_the_front(run, capsys):
    assert main(["report", str(run.path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["trial"] for row in rows] == ["fp32", "4", "1", "0"]
    assert set(rows[0]) == set(FRONT[0]) and rows[1]["bits.stem"] == "3"


def test_markdown_table_has_reference_row_and_front_sorted_by_size(run, capsys):
    assert main(["report", str(run.path), "--format", "md"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1].strip() == "trial" and "bits" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["fp32", "4", "1", "0"]


def test_report_writes_an_escaped_page_with_the_front_table_and_timing(run):
    text = write_html_report(run).read_text(encoding="utf-8")
    assert (run.path / "report.html").is_file()
    assert "synthetic &lt;test&gt;" in text and "<test>" not in text
    assert "5 trials, 1 failed" in text
    for member in FRONT:
        assert f"<td class=\"left\">{member['trial']}</td>" in text
    assert '<tr class="reference"><td class="left">fp32</td>' in text


def test_two_runs_share_one_table_and_an_overlay_page(tmp_path, capsys):
    first, second = make_report_run(tmp_path / "run-a"), make_report_run(tmp_path / "run-b")
    overlay = tmp_path / "fronts.html"
    assert main(["report", str(first.path), str(second.path), "--format", "md", "--html", str(overlay)]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert rows[0] == "run" and rows.count("run-a") == 4 and rows.count("run-b") == 4
    text = overlay.read_text(encoding="utf-8")
    assert "run-a" in text and "run-b" in text and text.count('class="plotly-graph-div"') == 1
    assert (first.path / "report.html").is_file() and (second.path / "report.html").is_file()


@pytest.mark.parametrize("damage", [lambda path: path.unlink(), lambda path: path.write_text("{oops"),
                                    lambda path: path.write_text('{"members": 3}')])
def test_missing_or_corrupt_pareto_exits_2_naming_the_file(run, capsys, damage):
    damage(run.path / "pareto.json")
    assert main(["report", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert str(run.path / "pareto.json") in err and "Traceback" not in err


def test_tensorboard_listens_on_loopback_only(run, tmp_path):
    run.tensorboard_dir.mkdir()
    argv = tensorboard_argv([run], 6123)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "6123"
    assert argv[argv.index("--logdir") + 1] == str(run.tensorboard_dir)
    other = make_report_run(tmp_path / "run-b")
    other.tensorboard_dir.mkdir()
    both = tensorboard_argv([run, other], 6006)
    assert both[both.index("--logdir_spec") + 1] == f"run-a:{run.tensorboard_dir},run-b:{other.tensorboard_dir}"


def test_tensorboard_without_its_folder_exits_2(run, capsys):
    with pytest.raises(RunDirectoryError, match="tensorboard: missing"):
        tensorboard_argv([run], 6006)
    assert main(["report", str(run.path), "--tensorboard"]) == 2
    assert str(run.tensorboard_dir) in capsys.readouterr().err


def test_the_terminal_report_says_why_each_member_is_on_the_front(run, capsys):
    assert main(["report", str(run.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Why on the front of run-a (resolution: eer exact, size_bytes exact):")
    assert lines[start + 1:start + 4] == [
        "  trial 4: lowest size_bytes",
        "  trial 1: lower eer than trial 4, the member no worse on size_bytes",
        "  trial 0: lowest eer",
    ]


def test_reasons_follow_the_resolution_pareto_json_records(run):
    objectives = [
        {"metric": "eer", "direction": "min", "resolution": 0.0},
        {"metric": "size_bytes", "direction": "min", "resolution": 0.0},
        {"metric": "latency_ms", "direction": "min", "resolution": "10%"},
    ]
    members = [{**FRONT[1], "latency_ms": 3.2}, {**FRONT[2], "latency_ms": 3.0}]
    run.write_pareto(objectives, run.read_reference(), members)
    assert reason_lines(read_front(run)) == [
        "Why on the front of run-a (resolution: eer exact, size_bytes exact, latency_ms 10%):",
        "  trial 4: lowest size_bytes",  # 3.0 ms is within 10% of 3.2 ms: not clearly faster
        "  trial 1: lowest eer",
    ]
    # A pareto.json without resolutions comes from a run that chose its front exactly.
    run.write_pareto([{k: v for k, v in o.items() if k != "resolution"} for o in objectives], run.read_reference(), members)
    assert reason_lines(read_front(run))[1:] == ["  trial 4: lowest size_bytes and lowest latency_ms", "  trial 1: lowest eer"]
