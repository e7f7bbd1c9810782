import math

import pytest

from search.config import ConfigError, load_config
from search.constraints import Constraint, is_feasible, parse_constraint, parse_constraints, violations
from search.front import front_hypervolume_history, front_members
from search.pareto import Objective
from search.tasks import TASKS
from search.trial_rows import RowSchema

KNOWN = TASKS["verification"].metric_names(["cortex-a72", "cortex-a53"])
OBJECTIVES = (Objective("eer", "min"), Objective("size_bytes", "min"))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("size_bytes <= 500000", Constraint("size_bytes", "<=", 500000.0)),
        ("size_bytes<=500_000", Constraint("size_bytes", "<=", 500000.0)),
        ("latency_ms@cortex-a53 <= 50", Constraint("latency_ms@cortex-a53", "<=", 50.0)),
        ("compression_ratio >= 4.5", Constraint("compression_ratio", ">=", 4.5)),
        ("eer <= 1e-1", Constraint("eer", "<=", 0.1)),
    ],
)
def test_expressions_parse(text, expected):
    assert parse_constraint(text, KNOWN) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("size <= 5", "unknown metric 'size'"),
        ("latency_ms@cortex-a76 <= 5", "unknown metric 'latency_ms@cortex-a76'"),
        ("size_bytes < 5", "operator '<' not supported"),
        ("size_bytes == 5", "operator '==' not supported"),
        ("size_bytes <= small", "bound 'small' is not a number"),
        ("size_bytes <= inf", "not a finite number"),
        ("size_bytes", "expected 'METRIC <= NUMBER'"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_constraint(text, KNOWN)


def test_config_errors_name_file_and_item(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("constraints: ['size_bytes <= 1000', 'latncy_ms <= 5']\n")
    with pytest.raises(ConfigError, match=r"run.yaml: constraints\[1\]: 'latncy_ms <= 5': unknown metric"):
        load_config(path)
    path.write_text("constraints: size_bytes <= 1000\n")
    with pytest.raises(ConfigError, match="constraints: must be a list"):
        load_config(path)


def test_config_round_trips_constraints(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "targets: [cortex-a72, cortex-a53]\n"
        "constraints: ['size_bytes <= 1_234_567', 'latency_ms@cortex-a53 <= 50.5']\n"
    )
    config = load_config(path)
    assert [str(c) for c in config.constraints] == ["size_bytes <= 1234567", "latency_ms@cortex-a53 <= 50.5"]
    assert parse_constraints(config.to_dict()["constraints"], KNOWN) == config.constraints


def test_violations_follow_optunas_sign_convention():
    constraints = parse_constraints(["size_bytes <= 100", "compression_ratio >= 4"], KNOWN)
    assert violations(constraints, {"size_bytes": 120, "compression_ratio": 5}) == {
        "size_bytes <= 100": 20.0,
        "compression_ratio >= 4": -1.0,
    }
    assert is_feasible(constraints, {"size_bytes": 100, "compression_ratio": 4})
    assert not is_feasible(constraints, {"size_bytes": 101, "compression_ratio": 4})
    assert math.isinf(violations(constraints, {"compression_ratio": 5})["size_bytes <= 100"])
    assert is_feasible((), {})


def test_infeasible_rows_are_marked_and_kept_off_the_front_and_hypervolume():
    schema = RowSchema(metric_keys=("eer", "size_bytes"), constraints=parse_constraints(["size_bytes <= 100"], KNOWN))
    small_bad = schema.finished(0, {"bits.a": 2}, {"eer": 0.2, "size_bytes": 50})
    large_good = schema.finished(1, {"bits.a": 8}, {"eer": 0.05, "size_bytes": 200})  # infeasible: too large
    mid = schema.finished(2, {"bits.a": 4}, {"eer": 0.1, "size_bytes": 90})
    assert [row["feasible"] for row in (small_bad, large_good, mid)] == [True, False, True]
    front = front_members([small_bad, large_good, mid], OBJECTIVES)
    assert [row["trial"] for row in front] == [0, 2]
    reference = {"eer": 0.15, "size_bytes": 400}
    with_infeasible = front_hypervolume_history([small_bad, large_good], OBJECTIVES, reference)
    assert with_infeasible[1] == with_infeasible[0] > 0
