"""Target CPU profiles: the hardware figures the cost model reads, loaded from YAML files.

A CPU is data, not code (as in nn-Meter): `hwcost/targets/<name>.yaml` holds one profile, and
adding a CPU means adding a file. Every figure carries its public source in a YAML comment, or
"modelled" where none exists. A target is a profile plus the runtime it prices (`runtime:`, a
`hwcost.runtimes` name; the modelled packed-kernel runtime when absent). An optional `measured:`
section, written by `search hwcost calibrate` from micro-benchmarks on the machine itself,
overrides the modelled figures it names and adds fitted kernel costs (`kernels:`, per cost key
nanoseconds per unit of each kernel feature, and `step_spill:`, the spill ramp of recurrent steps
they go with) and peak-memory terms (`memory:`), with where and
when they were measured (`provenance:`, `noise:`, `fit:`), so a profile records which of its
numbers were measured (`TargetProfile.measured`). Wherever a target name is accepted, so is the
path of a profile file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hwcost.kernels import DEFAULT_SPILL, SpillRamp, check_coefficients
from hwcost.memory import MEMORY_TERMS, MemoryCoefficients
from hwcost.runtimes import DEFAULT_RUNTIME, RUNTIMES
from spaces.description import FLOAT_BITS, KERNEL_CLASSES

TARGETS_DIR = Path(__file__).parent / "targets"
"""Where bare target names are looked up."""

_REQUIRED_KEYS = (
    "name",
    "clock_ghz",
    "cores_used",
    "simd_width_bits",
    "macs_per_cycle",
    "l1_kb",
    "l2_kb",
    "dram_bandwidth_gbps",
    "per_layer_overhead_us",
    "unpack_cycles_per_weight",
)
_OPTIONAL_KEYS = ("device", "isa", "l3_kb", "efficiency", "runtime", "measured")
_MEASURABLE_KEYS = (
    "macs_per_cycle",
    "efficiency",
    "dram_bandwidth_gbps",
    "per_layer_overhead_us",
    "unpack_cycles_per_weight",
)
_CALIBRATION_KEYS = ("kernels", "step_spill", "memory")
_RECORD_KEYS = ("provenance", "noise", "fit")
"""`measured:` sections that record how a calibration was made (kept as they are, for reading)."""
_CLASS_KEYS = ("macs_per_cycle", "efficiency")


class ProfileError(ValueError):
    """A target profile is missing, malformed or holds an impossible figure."""


def float_lanes(simd_width_bits: int) -> int:
    """Whole float lanes of a vector register `simd_width_bits` wide: the channel block of a
    blocked layout (onnxruntime's NCHWc)."""
    return simd_width_bits // FLOAT_BITS


@dataclass(frozen=True)
class TargetProfile:
    """One CPU as the roofline model sees it.

    Attributes:
        name: Target name (the file stem for bundled targets).
        clock_ghz: Sustained core clock.
        cores_used: Cores one inference runs on.
        simd_width_bits: Vector register width; sets the lanes of elementwise kernels.
        macs_per_cycle: Peak multiply-accumulates per cycle and core, per kernel class.
        efficiency: Fraction of that peak a tuned kernel sustains, per kernel class.
        l1_kb: L1 data cache per core.
        l2_kb: L2 cache available to the cores used.
        dram_bandwidth_gbps: Sustained DRAM bandwidth (10^9 bytes per second).
        per_layer_overhead_us: Fixed cost of dispatching one layer.
        unpack_cycles_per_weight: Cycles to unpack one sub-8-bit weight code to a byte.
        l3_kb: Last-level cache, or None when the CPU has none.
        device: Free-text description of the board or part.
        isa: Instruction set of the CPU (as `uname -m` names it: "x86_64", "aarch64"); a
            profile can only be validated on a host of its own instruction set. Empty: unknown.
        source: File the profile came from.
        measured: Dotted names of the figures a `measured:` section replaced or added.
        runtime: The `hwcost.runtimes` name of the runtime it prices.
        kernel_costs: Cost key -> nanoseconds per unit of each kernel feature, as calibrated;
            kernels of keys not named are priced by the roofline.
        step_spill: How recurrent steps spill their gate matrices from L2 (calibrated, or modelled).
        memory: Peak-memory terms (calibrated, or the modelled one copy of everything).
        calibration: The `provenance`, `noise` and `fit` records of its calibration, if any.
    """

    name: str
    clock_ghz: float
    cores_used: int
    simd_width_bits: int
    macs_per_cycle: dict[str, float]
    efficiency: dict[str, float]
    l1_kb: float
    l2_kb: float
    dram_bandwidth_gbps: float
    per_layer_overhead_us: float
    unpack_cycles_per_weight: float
    l3_kb: float | None = None
    device: str = ""
    isa: str = ""
    source: str = ""
    measured: tuple[str, ...] = ()
    runtime: str = DEFAULT_RUNTIME
    kernel_costs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    step_spill: SpillRamp = DEFAULT_SPILL
    memory: MemoryCoefficients = field(default_factory=MemoryCoefficients)
    calibration: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cycles_per_second(self) -> float:
        """Core cycles per second over all cores used."""
        return self.clock_ghz * 1e9 * self.cores_used

    @property
    def l1_bytes(self) -> float:
        return self.l1_kb * 1024

    @property
    def float_lanes(self) -> int:
        """Float lanes of a vector register (`float_lanes`)."""
        return float_lanes(self.simd_width_bits)

    @property
    def last_level_cache_bytes(self) -> float:
        """L3 when the CPU has one, else L2: what weights must fit in to be read from DRAM once."""
        return (self.l2_kb if self.l3_kb is None else self.l3_kb) * 1024

    @property
    def dram_bytes_per_second(self) -> float:
        return self.dram_bandwidth_gbps * 1e9

    def sustained_macs_per_cycle(self, kernel_class: str) -> float:
        """Peak MACs per cycle and core of a kernel class, scaled by its efficiency."""
        return self.macs_per_cycle[kernel_class] * self.efficiency[kernel_class]


def available_targets() -> list[str]:
    """Names of the bundled target profiles, sorted."""
    return sorted(path.stem for path in TARGETS_DIR.glob("*.yaml"))


def load_target(name_or_path: str | os.PathLike[str]) -> TargetProfile:
    """Load a profile by bundled name (e.g. "cortex-a72") or from a YAML file path.

    Raises:
        ProfileError: unknown name, unreadable file, invalid YAML or an invalid figure.
    """
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"{path}: cannot read target profile: {error.strerror}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from error
    return profile_from_dict(data, source=str(path))


def profile_from_dict(data: Any, source: str = "<profile>") -> TargetProfile:
    """Validate a parsed profile mapping and build a `TargetProfile`.

    Args:
        data: The mapping a YAML target file parses to.
        source: Name used in error messages (the file path when loaded from disk).

    Raises:
        ProfileError: naming `source` and the offending key.
    """
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a target profile must be a mapping, got {type(data).__name__}")
    _check_keys(source, "", data, allowed=_REQUIRED_KEYS + _OPTIONAL_KEYS, required=_REQUIRED_KEYS)
    figures = _validated_figures(source, "", data, complete=True)
    figures["efficiency"] = {**dict.fromkeys(KERNEL_CLASSES, 1.0), **figures.get("efficiency", {})}
    measured = data.get("measured") or {}
    if not isinstance(measured, dict):
        raise ProfileError(f"{source}: measured must be a mapping, got {type(measured).__name__}")
    _check_keys(source, "measured.", measured, allowed=_MEASURABLE_KEYS + _CALIBRATION_KEYS + _RECORD_KEYS, required=())
    overrides = _validated_figures(source, "measured.", measured, complete=False)
    for key, value in overrides.items():
        figures[key] = {**figures[key], **value} if key in _CLASS_KEYS else value
    kernel_costs = _kernel_costs(source, measured.get("kernels") or {})
    memory = _memory(source, measured.get("memory"))
    step_spill = _spill_ramp(source, "measured.step_spill", measured.get("step_spill"))
    runtime = _text(source, "runtime", data.get("runtime", DEFAULT_RUNTIME), allow_empty=False)
    if runtime not in RUNTIMES:
        raise ProfileError(f"{source}: unknown runtime {runtime!r}; expected one of {', '.join(sorted(RUNTIMES))}")
    calibrated = [f"kernels.{key}" for key in kernel_costs] + [f"memory.{key}" for key in measured.get("memory") or {}]
    calibrated += ["step_spill"] if "step_spill" in measured else []
    return TargetProfile(
        name=_text(source, "name", data["name"], allow_empty=False),
        device=_text(source, "device", data.get("device", ""), allow_empty=True),
        isa=_text(source, "isa", data.get("isa", ""), allow_empty=True),
        cores_used=int(_number(source, "cores_used", data["cores_used"], integer=True)),
        simd_width_bits=int(_number(source, "simd_width_bits", data["simd_width_bits"], integer=True)),
        clock_ghz=_number(source, "clock_ghz", data["clock_ghz"]),
        l1_kb=_number(source, "l1_kb", data["l1_kb"]),
        l2_kb=_number(source, "l2_kb", data["l2_kb"]),
        l3_kb=None if data.get("l3_kb") is None else _number(source, "l3_kb", data["l3_kb"]),
        source=source,
        measured=tuple(_dotted_names(overrides) + calibrated),
        runtime=runtime,
        kernel_costs=kernel_costs,
        step_spill=step_spill,
        memory=memory,
        calibration={key: measured[key] for key in _RECORD_KEYS if key in measured},
        **figures,
    )


def target_error(name_or_path: str | os.PathLike[str]) -> str | None:
    """Why `name_or_path` names no usable target (unknown name, missing or invalid file), or None.

    For command lines and configs, which accept a bundled target name or a profile file alike.
    """
    try:
        load_target(name_or_path)
    except ProfileError as error:
        return str(error)
    return None


def _kernel_costs(source: str, value: Any) -> dict[str, dict[str, float]]:
    """The `measured.kernels` mapping: cost key -> feature -> nanoseconds per unit (>= 0)."""
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: measured.kernels must be a mapping of cost key to coefficients, got {value!r}")
    costs: dict[str, dict[str, float]] = {}
    for key, coefficients in value.items():
        if not isinstance(coefficients, dict):
            raise ProfileError(f"{source}: measured.kernels.{key} must be a mapping of feature to number")
        problem = check_coefficients(str(key), coefficients)
        if problem is not None:
            raise ProfileError(f"{source}: measured.kernels: {problem}")
        costs[str(key)] = {
            name: _number(source, f"measured.kernels.{key}.{name}", number, allow_zero=True)
            for name, number in coefficients.items()
        }
    return costs


def _spill_ramp(source: str, key: str, value: Any) -> SpillRamp:
    """A `{start, full}` spill ramp (`hwcost.kernels.SpillRamp`), or the modelled one when absent."""
    if value is None:
        return DEFAULT_SPILL
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: {key} must be a mapping with start and full, got {value!r}")
    _check_keys(source, f"{key}.", value, allowed=("start", "full"), required=("start", "full"))
    start = _number(source, f"{key}.start", value["start"], allow_zero=True)
    full = _number(source, f"{key}.full", value["full"])
    if start >= full:
        raise ProfileError(f"{source}: {key}.start must be below {key}.full, got {start:g} and {full:g}")
    return SpillRamp(start, full)


def _memory(source: str, value: Any) -> MemoryCoefficients:
    """The `measured.memory` terms (`hwcost.memory`), or the modelled ones when absent."""
    if value is None:
        return MemoryCoefficients()
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: measured.memory must be a mapping, got {value!r}")
    _check_keys(source, "measured.memory.", value, allowed=MEMORY_TERMS, required=MEMORY_TERMS)
    copies = value["weight_copies"]
    if not isinstance(copies, dict):
        raise ProfileError(f"{source}: measured.memory.weight_copies must be a mapping of cost key to number")
    for key in copies:
        problem = check_coefficients(str(key), {})
        if problem is not None:
            raise ProfileError(f"{source}: measured.memory.weight_copies: {problem}")
    scalars = {
        key: _number(source, f"measured.memory.{key}", value[key], allow_zero=True)
        for key in MEMORY_TERMS
        if key != "weight_copies"
    }
    return MemoryCoefficients(
        weight_copies={
            str(key): _number(source, f"measured.memory.weight_copies.{key}", number, allow_zero=True)
            for key, number in copies.items()
        },
        **scalars,
    )


def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A path-like argument, or one with a suffix or folder, is a file; otherwise a bundled name."""
    candidate = Path(name_or_path)
    if isinstance(name_or_path, os.PathLike) or candidate.suffix or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise ProfileError(f"{candidate}: no such target profile file")
        return candidate
    bundled = TARGETS_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ProfileError(
            f"unknown target {str(name_or_path)!r}; available targets: {', '.join(available_targets())} "
            "(or pass the path of a .yaml profile)"
        )
    return bundled


def _check_keys(
    source: str, prefix: str, data: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]
) -> None:
    for key in data:
        if key not in allowed:
            raise ProfileError(f"{source}: unknown key {prefix}{key}; expected one of {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ProfileError(f"{source}: missing required key {prefix}{key}")


def _validated_figures(source: str, prefix: str, data: dict[str, Any], complete: bool) -> dict[str, Any]:
    """The figures a `measured:` section may also set, validated, keyed by field name.

    `complete` demands every kernel class in `macs_per_cycle` (the main section); a `measured:`
    section may name only the classes it calibrated.
    """
    figures: dict[str, Any] = {}
    for key in _MEASURABLE_KEYS:
        if key not in data:
            continue
        if key == "macs_per_cycle":
            figures[key] = _class_mapping(source, prefix + key, data[key], require_all=complete)
        elif key == "efficiency":
            figures[key] = _class_mapping(source, prefix + key, data[key], require_all=False, maximum=1.0)
        elif key == "dram_bandwidth_gbps":
            figures[key] = _number(source, prefix + key, data[key])
        else:
            figures[key] = _number(source, prefix + key, data[key], allow_zero=True)
    return figures


def _class_mapping(
    source: str, key: str, value: Any, require_all: bool, maximum: float | None = None
) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: {key} must be a mapping of kernel class to number, got {value!r}")
    for kernel_class in value:
        if kernel_class not in KERNEL_CLASSES:
            expected = ", ".join(KERNEL_CLASSES)
            raise ProfileError(f"{source}: unknown kernel class {key}.{kernel_class}; expected {expected}")
    if require_all:
        for kernel_class in KERNEL_CLASSES:
            if kernel_class not in value:
                raise ProfileError(f"{source}: missing required key {key}.{kernel_class}")
    return {
        kernel_class: _number(source, f"{key}.{kernel_class}", number, maximum=maximum)
        for kernel_class, number in value.items()
    }


def _number(
    source: str,
    key: str,
    value: Any,
    allow_zero: bool = False,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    """A finite number > 0 (or >= 0 with `allow_zero`), optionally an integer or capped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{source}: {key} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ProfileError(f"{source}: {key} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ProfileError(f"{source}: {key} must be finite, got {value!r}")
    if allow_zero and value < 0:
        raise ProfileError(f"{source}: {key} must be >= 0, got {value!r}")
    if not allow_zero and value <= 0:
        raise ProfileError(f"{source}: {key} must be > 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ProfileError(f"{source}: {key} must be <= {maximum:g}, got {value!r}")
    return float(value)


def _text(source: str, key: str, value: Any, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ProfileError(f"{source}: {key} must be a string, got {value!r}")
    if not allow_empty and not value.strip():
        raise ProfileError(f"{source}: {key} must not be empty")
    return value


def _dotted_names(overrides: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for key, value in overrides.items():
        if key in _CLASS_KEYS:
            names.extend(f"{key}.{kernel_class}" for kernel_class in value)
        else:
            names.append(key)
    return names
