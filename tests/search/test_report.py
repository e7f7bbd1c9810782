import csv
import io
import json

import pytest

from search.cli import main
from search.report import tensorboard_argv
from search.report_html import write_html_report
from search.run_dir import RunDirectory, RunDirectoryError

OBJECTIVES = [{"metric": "eer", "direction": "min"}, {"metric": "size_bytes", "direction": "min"}]
REFERENCE = {
    "trial": "fp32", "status": "reference", "eer": 0.05, "min_dcf": 0.5, "size_bytes": 800_000.0,
    "compression_ratio": 1.0, "latency_ms": 5.0, "peak_memory_bytes": 1_000_000.0,
}


def _trial(trial: int, bits: int, eer: float, size: float) -> dict:
    return {
        "trial": trial, "status": "complete", "bits.stem": bits, "bits.head": bits, "eer": eer, "min_dcf": 0.6,
        "size_bytes": size, "compression_ratio": 800_000.0 / size, "latency_ms": 3.0,
        "peak_memory_bytes": 500_000.0, "error": "", "seconds": 1.5,
    }


TRIALS = [
    _trial(0, 8, 0.051, 200_000.0),
    _trial(1, 4, 0.060, 100_000.0),
    {"trial": 2, "status": "failed", "bits.stem": 2, "bits.head": 2, "error": "ValueError: diverged", "seconds": None},
    _trial(3, 6, 0.070, 180_000.0),
    _trial(4, 3, 0.090, 90_000.0),
]
FRONT = [TRIALS[0], TRIALS[1], TRIALS[4]]


def _make_run(path) -> RunDirectory:
    path.mkdir()
    run = RunDirectory(path)
    run.write_config({"name": "synthetic <test>", "objectives": [[o["metric"], o["direction"]] for o in OBJECTIVES]})
    run.write_reference(REFERENCE)
    for row in TRIALS:
        run.append_trial(row)
    run.write_pareto(OBJECTIVES, REFERENCE, FRONT)
    run.write_hypervolume([0.1, 0.2, 0.2, 0.2, 0.3])
    return run


@pytest.fixture
def run(tmp_path) -> RunDirectory:
    return _make_run(tmp_path / "run-a")


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


def test_report_writes_a_self_contained_html_page(run):
    text = write_html_report(run).read_text(encoding="utf-8")
    assert (run.path / "report.html").is_file()
    assert "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text
    assert "synthetic &lt;test&gt;" in text and "<test>" not in text
    assert "5 trials, 1 failed" in text
    for member in FRONT:
        assert f"<td class=\"left\">{member['trial']}</td>" in text
    assert '<tr class="reference"><td class="left">fp32</td>' in text


def test_two_runs_share_one_table_and_an_overlay_page(tmp_path, capsys):
    first, second = _make_run(tmp_path / "run-a"), _make_run(tmp_path / "run-b")
    overlay = tmp_path / "fronts.html"
    assert main(["report", str(first.path), str(second.path), "--format", "md", "--html", str(overlay)]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert rows[0] == "run" and rows.count("run-a") == 4 and rows.count("run-b") == 4
    text = overlay.read_text(encoding="utf-8")
    assert "run-a" in text and "run-b" in text and "data:image/png;base64," in text
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
    other = _make_run(tmp_path / "run-b")
    other.tensorboard_dir.mkdir()
    both = tensorboard_argv([run, other], 6006)
    assert both[both.index("--logdir_spec") + 1] == f"run-a:{run.tensorboard_dir},run-b:{other.tensorboard_dir}"


def test_tensorboard_without_its_folder_exits_2(run, capsys):
    with pytest.raises(RunDirectoryError, match="tensorboard: missing"):
        tensorboard_argv([run], 6006)
    assert main(["report", str(run.path), "--tensorboard"]) == 2
    assert str(run.tensorboard_dir) in capsys.readouterr().err
