"""Reports put the EER of every evaluation set side by side."""

from search.report import eval_set_names, front_cells, front_columns, front_grid, read_front
from search.run_dir import RunDirectory

OBJECTIVES = [{"metric": "eer@an4", "direction": "min"}, {"metric": "size_bytes", "direction": "min"}]


def _row(trial, eer_synthetic, eer_an4, size):
    return {
        "trial": trial, "status": "complete" if trial != "fp32" else "reference", "bits.stem": 8,
        "eer": eer_synthetic, "min_dcf": 0.5, "eer@synthetic": eer_synthetic, "eer@an4": eer_an4,
        "size_bytes": size, "compression_ratio": 1.0, "latency_ms": 3.0, "peak_memory_bytes": 500_000.0,
    }


def _run(tmp_path, name, reference, members):
    path = tmp_path / name
    path.mkdir()
    run = RunDirectory(path)
    for member in members:  # a run records its trials before its front lists them
        run.append_trial(member)
    run.write_pareto(OBJECTIVES, reference, members)
    return run


def test_several_eval_sets_get_one_eer_column_each(tmp_path):
    run = _run(tmp_path, "two", _row("fp32", 0.07, 0.21, 600_000.0), [_row(3, 0.08, 0.25, 90_000.0)])
    front = read_front(run)
    assert eval_set_names([front]) == ["synthetic", "an4"]
    header, rows = front_grid([front])
    assert header[3:5] == ["EER % synthetic", "EER % an4"] and header[-1] == "bits"
    assert [row.cells[3:5] for row in rows] == [["7.00", "21.00"], ["8.00", "25.00"]]


def test_one_eval_set_keeps_the_single_eer_column(tmp_path):
    row = {key: value for key, value in _row("fp32", 0.07, 0.21, 600_000.0).items() if key != "eer@an4"}
    assert front_columns(["synthetic"]) == front_columns() and "EER %" in front_columns()
    assert front_cells(row, ["synthetic"])[3] == "7.00"


def test_runs_with_different_sets_show_a_dash_where_a_set_is_missing(tmp_path):
    both = _run(tmp_path, "both", _row("fp32", 0.07, 0.21, 600_000.0), [])
    one = {key: value for key, value in _row("fp32", 0.09, None, 600_000.0).items() if key != "eer@an4"}
    single = _run(tmp_path, "single", one, [])
    header, rows = front_grid([read_front(both), read_front(single)])
    assert header[:1] == ["run"] and header[4:6] == ["EER % synthetic", "EER % an4"]
    assert rows[1].cells[4:6] == ["9.00", "-"]
