"""`--set KEY=VALUE`: dotted keys, YAML values, validated like the file, errors naming the key."""

import pytest

from search.cli import main
from search.config import ConfigError, load_config
from search.overrides import parse_setting


@pytest.mark.parametrize(
    "text, expected",
    [
        ("search.trials=4", ("search.trials", 4)),
        ("teacher.learning_rate=0.001", ("teacher.learning_rate", 0.001)),
        ("space.bits=[4, 8]", ("space.bits", [4, 8])),
        ("search.stopped_in_front=true", ("search.stopped_in_front", True)),
        ("name=my run", ("name", "my run")),
        ("teacher.checkpoint=null", ("teacher.checkpoint", None)),
        ("search.storage=", ("search.storage", "")),
    ],
)
def test_a_setting_is_a_dotted_key_and_a_yaml_value(text, expected):
    assert parse_setting(text) == expected


@pytest.mark.parametrize("text", ["trials", "=4", "search..trials=4", "search.trials=[4"])
def test_a_malformed_setting_is_refused(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_setting(text)


def test_overrides_reach_nested_keys_and_are_validated_like_the_file():
    config = load_config("demo", {"teacher.steps": 7, "space.bits": [4, 8], "space.baselines": [8], "seed": 3})
    assert config.teacher.steps == 7 and config.space.bits == (4, 8) and config.seed == 3
    with pytest.raises(ConfigError, match=r"\(--set teacher.steps=many\): teacher.steps='many': expected int"):
        load_config("demo", {"teacher.steps": "many"})
    with pytest.raises(ConfigError, match=r"\(--set search.trails=4\): search: unknown key 'trails'"):
        load_config("demo", {"search.trails": 4})
    with pytest.raises(ConfigError, match="--set data.eval.0.path: data.eval is not a mapping"):
        load_config("sv_an4", {"data.eval.0.path": "x"})


def test_set_on_hwcost_show_changes_the_config(capsys):
    assert main(["hwcost", "show", "demo", "--set", "targets=[x86-avx2]"]) == 0
    out = capsys.readouterr().out
    assert "FP32 teacher on x86-avx2" in out and "cortex-a72" not in out


def test_set_on_space_prints_the_overridden_space(capsys):
    assert main(["space", "demo", "--set", "space.bits=[4, 8]", "--set", "space.baselines=[8]"]) == 0
    out = capsys.readouterr().out
    assert "[4, 8]" in out and "[2, 3, 4, 5, 6, 8, 32]" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["space", "demo", "--set", "search.trials=four"], "error: "),
        (["run", "demo", "--set", "seed=1", "--set", "seed=2"], "error: --set seed: given twice"),
        (["run", "demo", "--trials", "3", "--set", "search.trials=4"], "error: --trials and --set search.trials both set"),
        (["run", "--resume", "somewhere", "--set", "seed=1"], "drop --set"),
    ],
)
def test_bad_settings_exit_2_with_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_bad_value_names_the_key_and_the_command_line(capsys):
    assert main(["space", "demo", "--set", "search.trials=four"]) == 2
    assert "(--set search.trials=four): search.trials='four': expected int" in capsys.readouterr().err


def test_a_setting_without_equals_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["space", "demo", "--set", "trials"])
    assert exit_info.value.code == 2 and "expected KEY=VALUE" in capsys.readouterr().err
