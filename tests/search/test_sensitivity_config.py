"""The `search.sensitivity:` block: which estimator a run's damage table comes from, with its settings."""

import pytest
import yaml

from evaluators.sensitivity_estimators import HessianTraceEstimator, LossIncreaseEstimator, PerturbationEstimator
from search.config import ConfigError, load_config
from search.sensitivity_command import chosen_estimator
from search.sensitivity_tables import run_estimator


def test_without_the_block_a_run_keeps_the_tasks_default_estimator():
    assert load_config("demo").search.sensitivity == HessianTraceEstimator()
    assert load_config("extraction").search.sensitivity == PerturbationEstimator()


def test_the_block_selects_the_estimator_and_its_settings_and_round_trips(tmp_path):
    config = load_config("demo", {"search.sensitivity": {"estimator": "loss-increase", "batch_size": 64}})
    assert run_estimator(config) == LossIncreaseEstimator(batch_size=64)
    saved = config.to_dict()["search"]["sensitivity"]
    assert saved == {"estimator": "loss-increase", "batches": 1, "batch_size": 64, "seed": 0}
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(path) == config


def test_settings_alone_tune_the_default_estimator():
    config = load_config("demo", {"search.sensitivity.probes": 8})
    assert config.search.sensitivity == HessianTraceEstimator(probes=8)


@pytest.mark.parametrize(
    "block, message",
    [
        ({"estimator": "fisher"}, "search.sensitivity.estimator='fisher': expected one of ['hessian', 'loss-increase', 'perturbation']"),
        ({"estimator": "perturbation", "probes": 4}, "search.sensitivity: unknown key 'probes'"),
        ({"probes": 0}, "search.sensitivity.probes=0: must be >= 1"),
        ({"estimator": "loss-increase", "batch_size": "big"}, "search.sensitivity.batch_size='big': expected int"),
        ({"estimator": 3}, "search.sensitivity.estimator=3: expected str"),
        ("hessian", "search.sensitivity: must be a mapping"),
    ],
)
def test_a_bad_block_names_the_key_and_value(block, message):
    with pytest.raises(ConfigError, match="demo.yaml") as raised:
        load_config("demo", {"search.sensitivity": block})
    assert message in str(raised.value)


def test_a_data_driven_estimator_is_refused_for_a_task_without_batches():
    with pytest.raises(ConfigError) as raised:
        load_config("extraction", {"search.sensitivity.estimator": "hessian"})
    assert "search.sensitivity.estimator='hessian'" in str(raised.value)
    assert "use perturbation" in str(raised.value)


def test_the_commands_estimator_flag_overrides_the_config_keeping_its_settings_for_the_same_estimator():
    config = load_config("demo", {"search.sensitivity": {"estimator": "hessian", "probes": 8}})
    assert chosen_estimator(config, None) == HessianTraceEstimator(probes=8)
    assert chosen_estimator(config, "hessian") == HessianTraceEstimator(probes=8)
    assert chosen_estimator(config, "loss-increase") == LossIncreaseEstimator()


def test_the_commands_flag_cannot_pick_a_data_driven_estimator_for_a_task_without_batches():
    with pytest.raises(ConfigError, match="--estimator hessian: .*task 'extraction'"):
        chosen_estimator(load_config("extraction"), "hessian")
