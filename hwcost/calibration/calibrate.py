"""`search hwcost calibrate`: measure a runtime's kernels on this machine and write a profile.

Every micro-benchmark of a grid (`hwcost.calibration.cases`) is lowered for the runtime
(`hwcost.calibration.backends`), timed (`hwcost.calibration.measure`) and its peak memory
measured in a fresh process (both depths of a stack, so that the memory fit sees long stacks
reuse their buffers); the kernel costs and memory terms are then
fitted (`hwcost.calibration.fit`). The profile written is the base profile (its hardware figures
price, by the roofline, any kernel the calibration did not measure) with the runtime named and a
`measured:` section: the fitted `kernels:` and `memory:`, the `provenance:` of the measurements
(CPU, runtime version, date, settings, machine load), their `noise:` and the `fit:`'s errors on
its own cases. Its cache sizes and vector width are this CPU's, as Linux reports them: the
cache-dependent kernel features are relative to the L2 size, and blocked convolutions pad their
channels to the vector's float lanes.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hwcost.calibration.backends import Backend, PreparedModel, lower_and_time
from hwcost.calibration.cases import Grid, ModelCase, calibration_cases
from hwcost.calibration.fit import FitReport, Observation, fit_latency, fit_memory
from hwcost.calibration.measure import (
    CALIBRATION_TIMING,
    MemoryMeasurement,
    Timing,
    TimingPlan,
    cpu_model,
    host_hardware,
    host_provenance,
    measure_peak_memory,
    reference_ms,
)
from hwcost.memory import MemoryCoefficients
from hwcost.profile import float_lanes, load_target
from hwcost.runtimes import get_runtime
from spaces.description import ModelDescription

DEFAULT_BASE = "x86-avx2"
"""Bundled profile whose hardware figures a calibrated x86 profile keeps."""

SIGNIFICANT_DIGITS = 4
"""Digits kept of each fitted coefficient (measurement noise is far above the fifth)."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CaseMeasurement:
    """One case measured under one runtime: its description, its time and (maybe) its peak memory."""

    name: str
    description: ModelDescription
    timing: Timing
    memory: MemoryMeasurement


@dataclass(frozen=True)
class Calibration:
    """A calibration's profile and how it was obtained.

    Attributes:
        profile: The profile mapping to write as YAML (`hwcost.profile` reads it).
        measurements: Every case measured.
        latency_fit, memory_fit: The fits' errors on their own cases.
    """

    profile: dict[str, Any]
    measurements: tuple[CaseMeasurement, ...]
    latency_fit: FitReport
    memory_fit: FitReport

    @property
    def noise(self) -> dict[str, Any]:
        return self.profile["measured"]["noise"]


def measure_cases(
    backend: Backend, cases: Sequence[ModelCase], progress: Progress | None = None, timing: TimingPlan = CALIBRATION_TIMING
) -> list[CaseMeasurement]:
    """Lower, time and measure the peak memory of every case."""
    prepared, timings = lower_and_time(backend, cases, timing, progress)
    return with_peak_memory(cases, prepared, timings, progress)


def with_peak_memory(
    cases: Sequence[ModelCase], prepared: Sequence[PreparedModel], timings: Sequence[Timing], progress: Progress | None = None
) -> list[CaseMeasurement]:
    """The cases lowered (`prepared`) and timed (`timings`), with their peak memory measured."""
    measured = []
    for index, (case, model, measured_time) in enumerate(zip(cases, prepared, timings)):
        if progress:
            progress(f"peak memory ({case.name})", index, len(cases))
        memory = measure_peak_memory(model.graph, model.feeds)
        measured.append(CaseMeasurement(case.name, model.description, measured_time, memory))
    if progress:
        progress("peak memory", len(cases), len(cases))
    return measured


def calibrate(
    backend: Backend,
    grid: Grid,
    grid_name: str,
    base: str = DEFAULT_BASE,
    name: str | None = None,
    progress: Progress | None = None,
    timing: TimingPlan = CALIBRATION_TIMING,
) -> Calibration:
    """Measure `grid` with `backend`'s runtime and fit a profile named `name` on the figures of `base`.

    Raises:
        ProfileError: `base` names no valid profile.
    """
    runtime = backend.runtime
    base_profile = load_target(base)
    provenance = {**host_provenance(runtime), "grid": grid_name, "base_profile": base_profile.name}
    measurements = measure_cases(backend, calibration_cases(grid, backend.weight_formats, backend.stem_pairs), progress, timing)
    return fit_profile(runtime, measurements, base, name or f"host-{runtime}", provenance, host_hardware())


def fit_profile(
    runtime: str,
    measurements: Sequence[CaseMeasurement],
    base: str,
    name: str,
    provenance: dict[str, Any],
    hardware: dict[str, float],
) -> Calibration:
    """The calibrated profile of `measurements` (the fitting half of `calibrate`), with the
    host's `hardware` figures (`measure.host_hardware`: profile keys l1_kb, l2_kb, l3_kb,
    simd_width_bits; the base profile's where absent). Times
    are taken at the least loaded reference speed seen (`measure`), which the profile records."""
    lowering = get_runtime(runtime)
    reference = reference_ms([item.timing for item in measurements])
    observations = [
        Observation(
            item.name, lowering.lower(item.description), item.timing.at_reference(reference), item.timing.relative_iqr,
            item.memory.peak_bytes,
        )
        for item in measurements
    ]  # fmt: skip
    data = {**_base_data(base), **hardware}
    latency = fit_latency(observations, data["l2_kb"] * 1024, float_lanes(int(data["simd_width_bits"])))
    memory, memory_fit = fit_memory(observations, lowering)
    data.update(name=name, device=cpu_model(), isa=os.uname().machine, runtime=runtime)
    data["measured"] = {
        "provenance": {**provenance, "cases": len(measurements), "reference_ms": _rounded(reference)},
        "noise": _noise(measurements),
        "fit": {**latency.report.summary("latency"), **memory_fit.summary("memory")},
        "kernels": {
            key: {feature: _rounded(value) for feature, value in features.items()} for key, features in latency.coefficients.items()
        },
        "step_spill": {"start": latency.step_spill.start, "full": latency.step_spill.full},
        "memory": _memory_section(memory),
    }
    return Calibration(data, tuple(measurements), latency.report, memory_fit)


def write_profile(calibration: Calibration, path: Path) -> Path:
    """Write the profile YAML (with a header naming its origin); it loads with `load_target(path)`."""
    provenance = calibration.profile["measured"]["provenance"]
    header = (
        f"# Calibrated by `search hwcost calibrate --runtime {provenance['runtime']}` on {provenance['cpu']},\n"
        f"# {provenance['date']}. Hardware figures are {provenance['base_profile']}'s but for the cache sizes and\n"
        "# vector width, this host's: the roofline prices only kernels this calibration did not\n"
        "# measure. measured.kernels: nanoseconds per unit of each kernel\n"
        "# feature (hwcost/kernels.py); measured.memory: the peak-memory terms (hwcost/memory.py).\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(calibration.profile, sort_keys=False))
    return path


def _base_data(base: str) -> dict[str, Any]:
    """The base profile's own mapping, without any runtime or measured section."""
    data = yaml.safe_load(Path(load_target(base).source).read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if key not in ("runtime", "measured")}


def _noise(measurements: Sequence[CaseMeasurement]) -> dict[str, Any]:
    spreads = {item.name: item.timing.relative_iqr for item in measurements}
    rounds = {item.name: item.timing.round_spread for item in measurements}
    worst = max(spreads, key=spreads.__getitem__)
    worst_round = max(rounds, key=rounds.__getitem__)
    return {
        "statistic": "relative interquartile range of the runs within a round; spread of the round medians that agree",
        "median_relative_iqr": round(statistics.median(spreads.values()), 4),
        "worst_relative_iqr": round(spreads[worst], 4),
        "worst_case": worst,
        "median_round_spread": round(statistics.median(rounds.values()), 4),
        "worst_round_spread": round(rounds[worst_round], 4),
        "worst_round_case": worst_round,
        "timed_runs": sum(item.timing.runs for item in measurements),
        "timed_again": sum(item.timing.timed_again for item in measurements),
    }


def _memory_section(memory: MemoryCoefficients) -> dict[str, Any]:
    return {
        "fixed_bytes": _rounded(memory.fixed_bytes),
        "kernel_type_bytes": _rounded(memory.kernel_type_bytes),
        "weight_copies": {key: _rounded(value) for key, value in sorted(memory.weight_copies.items())},
        "activation_factor": _rounded(memory.activation_factor),
        "live_factor": _rounded(memory.live_factor),
        "pattern_factor": _rounded(memory.pattern_factor),
        "decoded_factor": _rounded(memory.decoded_factor),
    }


def _rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


__all__ = [
    "DEFAULT_BASE",
    "Calibration",
    "CaseMeasurement",
    "calibrate",
    "fit_profile",
    "measure_cases",
    "with_peak_memory",
    "write_profile",
]
