"""A target is a profile plus a runtime, named by a bundled name or given as a profile file anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwcost import CostModel, ProfileError, available_targets, load_target, profile_from_dict, target_error
from hwcost.runtimes import DEFAULT_RUNTIME
from search.cli import main
from search.config import ConfigError, load_config
from spaces.description import LayerDescription, ModelDescription

CALIBRATED = {
    "name": "file-cpu",
    "clock_ghz": 2.0,
    "cores_used": 1,
    "simd_width_bits": 256,
    "macs_per_cycle": {"fp32": 16, "int8": 32, "lowbit": 32, "lookup": 16, "binary": 96},
    "l1_kb": 48,
    "l2_kb": 2048,
    "dram_bandwidth_gbps": 20.0,
    "per_layer_overhead_us": 2.0,
    "unpack_cycles_per_weight": 0.1,
    "isa": "x86_64",
    "runtime": "onnxruntime-fp32",
    "measured": {
        "provenance": {"cpu": "test", "onnxruntime_version": "0", "date": "2026-01-01"},
        "kernels": {"conv1d/fp32": {"calls": 2000.0, "macs": 0.01}},
    },
}


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "calibrated.yaml"
    path.write_text(yaml.safe_dump(CALIBRATED))
    return path


def test_bundled_profiles_price_the_modelled_packed_kernel_runtime_and_name_their_isa():
    for name in available_targets():
        profile = load_target(name)
        assert profile.runtime == DEFAULT_RUNTIME and profile.kernel_costs == {}
        assert profile.isa in ("x86_64", "aarch64")


def test_a_profile_file_carries_its_runtime_and_calibrated_costs(profile_file):
    profile = load_target(profile_file)
    assert profile.runtime == "onnxruntime-fp32"
    assert profile.kernel_costs == {"conv1d/fp32": {"calls": 2000.0, "macs": 0.01}}
    assert "kernels.conv1d/fp32" in profile.measured
    assert profile.calibration["provenance"]["cpu"] == "test"
    conv = LayerDescription(
        "conv", "conv1d", params=100, macs_per_second=1e6, input_elements_per_second=100, output_elements_per_second=100
    )
    by_path = CostModel().estimate(ModelDescription("toy", (conv,)), str(profile_file))
    assert by_path.layers[0].latency_ms == pytest.approx((2000.0 + 0.01 * 1e6) / 1e6)


def test_an_unknown_runtime_is_a_profile_error_naming_the_registered_ones():
    with pytest.raises(ProfileError, match="unknown runtime 'tflite'.*onnxruntime-int8"):
        profile_from_dict({**CALIBRATED, "runtime": "tflite"})


def test_target_error_accepts_names_and_files_and_says_why_not(profile_file, tmp_path):
    assert target_error("cortex-a72") is None
    assert target_error(str(profile_file)) is None
    assert "unknown target 'no-such-cpu'" in target_error("no-such-cpu")
    assert "no such target profile file" in target_error(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**CALIBRATED, "runtime": "tflite"}))
    assert "unknown runtime" in target_error(str(broken))


def test_a_config_accepts_a_profile_file_among_its_targets(profile_file, tmp_path):
    config = load_config("demo", {"targets": ["cortex-a72", str(profile_file)]})
    assert config.targets == ("cortex-a72", str(profile_file))
    with pytest.raises(ConfigError, match="no such target profile file"):
        load_config("demo", {"targets": [str(tmp_path / "missing.yaml")]})


def test_hwcost_show_accepts_a_profile_file(profile_file, capsys):
    assert main(["hwcost", "show", "demo", "--target", str(profile_file)]) == 0
    assert "FP32 teacher" in capsys.readouterr().out
    assert main(["hwcost", "show", "demo", "--target", "no-such-cpu"]) == 2
