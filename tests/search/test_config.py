from pathlib import Path

import pytest
import yaml

from search.cli import main
from search.config import DEFAULT_CONFIG, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads_and_round_trips(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    assert config.name == "demo" and config.search.trials >= 20
    assert [o.metric for o in config.objectives] == ["eer", "size_bytes", "latency_ms"]
    again = load_config(write(tmp_path, yaml.safe_dump(config.to_dict())))
    assert again == config


def test_overrides_apply_dotted_keys():
    config = load_config(DEFAULT_CONFIG, {"search.trials": 4, "seed": 7})
    assert config.search.trials == 4 and config.seed == 7


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [unclosed", "malformed YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("colour: red\n", "unknown key 'colour'"),
        ("search:\n  trails: 3\n", "search: unknown key 'trails'"),
        ("space:\n  bits: [4, 11]\n", "space.bits: impossible bit width 11"),
        ("data:\n  test_speakers: 0\n", "test_speakers"),
        ("data:\n  corpus: voxceleb\n", "data.corpus='voxceleb'"),
        ("model:\n  family: vgg\n", "model.family='vgg'"),
        ("targets: [pentium]\n", "unknown target 'pentium'"),
        ("objectives: [[eer, smallest]]\n", "smallest"),
        ("objectives: [[err, min]]\n", "objectives: unknown metric 'err'"),
        ("objectives: [[latency_ms@cortex-a53, min]]\n", "unknown metric 'latency_ms@cortex-a53'"),
        ("search:\n  sampler: magic\n", "search.sampler='magic'"),
        ("teacher:\n  steps: 0\n", "teacher.steps=0"),
        ("search:\n  trials: many\n", "search.trials='many': expected int"),
        ("teacher:\n  learning_rate: fast\n", "teacher.learning_rate='fast': expected float"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_objectives_may_name_any_target(tmp_path):
    path = write(tmp_path, "targets: [cortex-a72, cortex-a53]\nobjectives: [[eer, min], [latency_ms@cortex-a53, min]]\n")
    assert load_config(path).objectives[1].metric == "latency_ms@cortex-a53"


def test_missing_file_is_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = write(tmp_path, "search:\n  trails: 3\n")
    assert main(["run", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'trails'" in err and "Traceback" not in err


def test_cli_unwritable_output_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", str(DEFAULT_CONFIG), "--out", str(blocker / "results")]) == 2
    assert "cannot create the run directory" in capsys.readouterr().err


def test_cli_report_on_missing_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err


def test_fidelity_block_sets_the_ladder_and_round_trips(tmp_path):
    config = load_config(write(tmp_path, "fidelity:\n  steps: [0, 100, 300]\n  msft: true\n  soft_step: true\n"))
    assert config.fidelity.steps == (0, 100, 300) and config.fidelity.msft and config.fidelity.soft_step
    assert load_config(write(tmp_path, yaml.safe_dump(config.to_dict()))) == config
    assert load_config(DEFAULT_CONFIG).fidelity.steps == (0,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("fidelity:\n  steps: [100, 50]\n", "fidelity.steps=[100, 50]: must be strictly increasing"),
        ("fidelity:\n  steps: 100\n", "fidelity.steps=100: expected a non-empty list"),
        ("fidelity:\n  stpes: [0]\n", "fidelity: unknown key 'stpes'"),
        ("fidelity:\n  learning_rate: fast\n", "fidelity.learning_rate='fast': expected float"),
        ("fidelity:\n  msft: maybe\n", "fidelity.msft='maybe': expected bool"),
        ("fidelity:\n  sensitivity_quantizer: ternary\n", "fidelity.sensitivity_quantizer='ternary': unknown"),
    ],
)
def test_bad_fidelity_block_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


MEASURED = "targets: [cortex-a72, {name: x86-avx2, measure: true, resources: {rpi4: 1}, cpus: 4}]\n"


def test_a_measured_target_parses_round_trips_and_its_prediction_may_be_an_objective(tmp_path):
    objectives = "objectives: [[eer, min], [latency_ms@x86-avx2, min], [predicted_latency_ms@x86-avx2, min]]\n"
    config = load_config(write(tmp_path, MEASURED + objectives))
    assert config.targets == ("cortex-a72", "x86-avx2")
    (target,) = config.measured_targets
    assert (target.name, target.resources, target.cpus) == ("x86-avx2", {"rpi4": 1}, 4)
    assert config.to_dict()["targets"][0] == "cortex-a72" and "measured_targets" not in config.to_dict()
    assert load_config(write(tmp_path, yaml.safe_dump(config.to_dict()))) == config


def test_a_target_mapping_without_measure_is_a_priced_target(tmp_path):
    config = load_config(write(tmp_path, "targets: [{name: cortex-a53}, cortex-a72]\n"))
    assert config.targets == ("cortex-a53", "cortex-a72") and config.measured_targets == ()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{name: x86-avx2, measure: true, resources: {rpi4: 0}}", "targets[0].resources.rpi4=0: must be a positive number"),
        ("{name: x86-avx2, measure: true, resources: {rpi4: many}}", "targets[0].resources.rpi4='many': must be a positive number"),
        ("{name: x86-avx2, measure: true, resources: [rpi4]}", "targets[0].resources=('rpi4',): expected a mapping"),
        ("{name: x86-avx2, measure: true, resource: {rpi4: 1}}", "targets[0]: unknown key 'resource'"),
        ("{name: x86-avx2, measure: true, resources: {CPU: 4}}", "targets[0].resources.CPU: Ray's own resource"),
        ("{measure: true, resources: {rpi4: 1}}", "targets[0]: needs a name"),
        ("{name: x86-avx2, measure: yes please}", "targets[0].measure='yes please': expected bool"),
        ("{name: x86-avx2, resources: {rpi4: 1}}", "targets[0].resources: read only with measure: true"),
        ("{name: x86-avx2, measure: true, cpus: -1}", "targets[0].cpus=-1: must be >= 0"),
        ("{name: x86-avx2, measure: true, repeats: 0}", "targets[0].repeats=0: must be >= 1"),
        ("{name: x86-avx2, measure: true, timeout_s: 0}", "targets[0].timeout_s=0: must be > 0"),
        ("{name: pentium, measure: true}", "unknown target 'pentium'"),
        ("cortex-a72, cortex-a72", "'cortex-a72' is named more than once"),
    ],
)
def test_a_bad_target_entry_names_its_index_key_and_value(tmp_path, entry, message):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, f"targets: [{entry}]\n"))
    assert message in str(raised.value)


def test_only_a_measured_target_has_a_predicted_latency_metric(tmp_path):
    text = MEASURED + "objectives: [[eer, min], [predicted_latency_ms@cortex-a72, min]]\n"
    with pytest.raises(ConfigError, match="unknown metric 'predicted_latency_ms@cortex-a72'"):
        load_config(write(tmp_path, text))


def test_measured_targets_is_no_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'measured_targets'"):
        load_config(write(tmp_path, "measured_targets: []\n"))


def test_distillation_taps_must_be_outputs_of_the_model():
    assert load_config(DEFAULT_CONFIG, {"fidelity.distillation_taps": ["layer4"]}).fidelity.distillation_taps == ("layer4",)
    with pytest.raises(ConfigError, match=r"fidelity.distillation_taps: resnet has no tap 'lstm'; its taps: \['stem'"):
        load_config(DEFAULT_CONFIG, {"fidelity.distillation_taps": ["lstm"]})
