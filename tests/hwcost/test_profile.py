"""Target profiles: bundled files load, and bad files fail naming the file and the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hwcost import KERNEL_CLASSES, ProfileError, available_targets, load_target, profile_from_dict
from hwcost.profile import TARGETS_DIR

MACS = {"fp32": 4, "int8": 8, "lowbit": 8, "lookup": 4, "binary": 64}
VALID = {
    "name": "test-cpu",
    "clock_ghz": 2.0,
    "cores_used": 1,
    "simd_width_bits": 128,
    "macs_per_cycle": MACS,
    "l1_kb": 32,
    "l2_kb": 1024,
    "dram_bandwidth_gbps": 4.0,
    "per_layer_overhead_us": 10.0,
    "unpack_cycles_per_weight": 0.5,
}


def _with(**changes: object) -> dict:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def _write(tmp_path: Path, data: dict, name: str = "bad-cpu.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_bundled_targets_include_the_spine_target_and_all_load():
    names = available_targets()
    assert "cortex-a72" in names
    for name in names:
        profile = load_target(name)
        assert profile.name == name
        assert set(profile.macs_per_cycle) == set(KERNEL_CLASSES)
        assert profile.measured == ()


def test_cortex_a72_figures_match_its_public_sources():
    profile = load_target("cortex-a72")
    assert profile.clock_ghz == 1.5
    assert profile.macs_per_cycle["fp32"] == 4
    assert profile.l1_kb == 32 and profile.l2_kb == 1024 and profile.l3_kb is None
    assert profile.dram_bandwidth_gbps == pytest.approx(4.8)


def _is_key(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _has_source_comment(lines: list[str], index: int) -> bool:
    """A comment sits above the key, above the run of sibling keys it belongs to, or above its parent."""
    indent = _indent(lines[index])
    above = index - 1
    while above >= 0 and _is_key(lines[above]) and _indent(lines[above]) == indent:
        above -= 1
    if above < 0:
        return False
    if lines[above].lstrip().startswith("#"):
        return True
    return _is_key(lines[above]) and _indent(lines[above]) < indent and _has_source_comment(lines, above)


def test_every_bundled_figure_is_preceded_by_a_source_or_modelled_comment():
    for path in sorted(TARGETS_DIR.glob("*.yaml")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if not _is_key(line) or line.rstrip().endswith(":") or line.startswith(("name:", "device:")):
                continue
            assert _has_source_comment(lines, index), f"{path.name}: {line.strip()} has no source comment"


def test_load_by_path_and_by_path_object(tmp_path):
    path = _write(tmp_path, VALID, "test-cpu.yaml")
    assert load_target(str(path)).source == str(path)
    assert load_target(path).clock_ghz == 2.0


def test_unknown_target_name_lists_the_available_ones():
    with pytest.raises(ProfileError) as error:
        load_target("cortex-z99")
    message = str(error.value)
    assert "cortex-z99" in message
    for name in available_targets():
        assert name in message


def test_missing_path_names_the_file(tmp_path):
    with pytest.raises(ProfileError, match="nowhere.yaml"):
        load_target(tmp_path / "nowhere.yaml")


def test_missing_field_names_file_and_key(tmp_path):
    data = _with()
    del data["dram_bandwidth_gbps"]
    with pytest.raises(ProfileError, match=r"bad-cpu\.yaml: missing required key dram_bandwidth_gbps"):
        load_target(_write(tmp_path, data))


def test_negative_bandwidth_names_file_key_and_value(tmp_path):
    with pytest.raises(ProfileError, match=r"bad-cpu\.yaml: dram_bandwidth_gbps must be > 0, got -1"):
        load_target(_write(tmp_path, _with(dram_bandwidth_gbps=-1)))


def test_unknown_field_names_file_and_key(tmp_path):
    with pytest.raises(ProfileError, match=r"bad-cpu\.yaml: unknown key l4_kb"):
        load_target(_write(tmp_path, _with(l4_kb=4096)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clock_ghz": 0}, "clock_ghz must be > 0, got 0"),
        ({"cores_used": 1.5}, "cores_used must be an integer"),
        ({"clock_ghz": "fast"}, "clock_ghz must be a number"),
        ({"clock_ghz": True}, "clock_ghz must be a number"),
        ({"l2_kb": float("inf")}, "l2_kb must be finite"),
        ({"per_layer_overhead_us": -0.5}, "per_layer_overhead_us must be >= 0"),
        ({"macs_per_cycle": {**MACS, "int8": 0}}, "macs_per_cycle.int8 must be > 0, got 0"),
        ({"macs_per_cycle": {"fp32": 4}}, "missing required key macs_per_cycle.int8"),
        ({"macs_per_cycle": {**MACS, "fp16": 8}}, "unknown kernel class macs_per_cycle.fp16"),
        ({"efficiency": {"fp32": 1.5}}, "efficiency.fp32 must be <= 1, got 1.5"),
        ({"name": ""}, "name must not be empty"),
    ],
)
def test_impossible_figures_are_rejected_naming_the_key(changes, message):
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(_with(**changes), source="test-cpu.yaml")


def test_zero_overhead_and_unpack_cost_are_allowed():
    profile = profile_from_dict(_with(per_layer_overhead_us=0, unpack_cycles_per_weight=0))
    assert profile.per_layer_overhead_us == 0.0
    assert profile.unpack_cycles_per_weight == 0.0


def test_efficiency_defaults_to_one_for_unlisted_classes():
    profile = profile_from_dict(_with(efficiency={"fp32": 0.5}))
    assert profile.efficiency == {"fp32": 0.5, "int8": 1.0, "lowbit": 1.0, "lookup": 1.0, "binary": 1.0}
    assert profile.sustained_macs_per_cycle("fp32") == 2.0


def test_measured_section_overrides_modelled_figures_and_records_them():
    data = _with(
        efficiency={"int8": 0.6},
        measured={"dram_bandwidth_gbps": 3.5, "efficiency": {"int8": 0.45}, "macs_per_cycle": {"binary": 48}},
    )
    profile = profile_from_dict(data)
    assert profile.dram_bandwidth_gbps == 3.5
    assert profile.efficiency["int8"] == 0.45
    assert profile.macs_per_cycle["binary"] == 48
    assert profile.macs_per_cycle["fp32"] == 4
    assert set(profile.measured) == {"dram_bandwidth_gbps", "efficiency.int8", "macs_per_cycle.binary"}


@pytest.mark.parametrize(
    ("measured", "message"),
    [
        ({"dram_bandwidth_gbps": 0}, "measured.dram_bandwidth_gbps must be > 0"),
        ({"clock_ghz": 3.0}, "unknown key measured.clock_ghz"),
        ({"efficiency": {"int4": 0.5}}, "unknown kernel class measured.efficiency.int4"),
        ([1, 2], "measured must be a mapping"),
    ],
)
def test_invalid_measured_section_names_the_measured_key(measured, message):
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(_with(measured=measured), source="test-cpu.yaml")


def test_invalid_yaml_and_non_mapping_files_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml: not valid YAML"):
        load_target(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ProfileError, match=r"listed\.yaml: a target profile must be a mapping"):
        load_target(listed)
