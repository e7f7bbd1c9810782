"""Cost-model accuracy on this host, before and after calibration, per onnxruntime runtime (issue #23).

For each runtime (onnxruntime FP32, static int8, weight-only): the fixed validation set
(`hwcost.calibration.validation`, every family at several widths and depths) and the runtime's
calibration grid (`search hwcost calibrate`'s) are lowered for the runtime and timed together
(median per-thread CPU time, one thread; the two sets interleaved in the same rounds, so that
load drifting on this shared host weighs on both alike), and their peak memory measured in fresh
processes, once; the runtime is calibrated on the grid's figures; then three profiles are set
beside the same validation measurements:

- "packed kernels (modelled)": the bundled `x86-avx2` profile as the cost model priced it
  before runtimes existed (integer kernels for every class, no fusion);
- "runtime-aware (modelled)": the same figures with the runtime's kernels and fusions;
- "calibrated": the fitted profile.

Per profile: the fraction of models within +-10% and +-25% (latency, peak memory), Spearman
rank correlations, the worst layer kinds; per model every prediction beside the measurement.
Issue #23's targets (after calibration): >= 90% of models within +-10% and Spearman >= 0.95 for
onnxruntime FP32 and int8; peak memory within +-25% for >= 90%. Writes
`results/benchmarks/cost_model_accuracy.json` (docs tables: `benchmarks/render_docs.py`) and the
calibrated profiles beside it (`cost_model_accuracy-profiles/`; a run with `--out` writes its own
beside its JSON). The full run takes tens of minutes; `--quick`
calibrates on the small grid and validates the tiny set, to check the script (its JSON goes to
`benchmarks/out/cost_model_accuracy_quick.json` unless --out is given).

    .venv/bin/python benchmarks/cost_model_accuracy.py [--runtimes R ...] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwcost import load_target  # noqa: E402
from hwcost.calibration.backends import get_backend, lower_all, timed_graphs  # noqa: E402
from hwcost.calibration.calibrate import DEFAULT_BASE, CaseMeasurement, fit_profile, with_peak_memory, write_profile  # noqa: E402
from hwcost.calibration.cases import GRIDS, calibration_cases  # noqa: E402
from hwcost.calibration.measure import (  # noqa: E402
    CALIBRATION_TIMING,
    VALIDATION_TIMING,
    GraphSet,
    host_hardware,
    host_provenance,
    time_graph_sets,
)
from hwcost.calibration.validation import (  # noqa: E402
    VALIDATION_SETS,
    WITHIN,
    PreparedMeasurement,
    ValidationReport,
    print_report,
    set_measurements,
    validate,
)
from render_docs import RESULTS, shown, write_result  # noqa: E402
from search.onnx_export import export_onnx  # noqa: E402

RUNTIMES = ("onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-weight-only")
QUICK_OUT = ROOT / "benchmarks" / "out" / "cost_model_accuracy_quick.json"
"""Where `--quick` writes (ignored by git: its figures are not the benchmark's)."""


def profile_folder(out: Path) -> Path:
    """Where a run writing its JSON to `out` writes its calibrated profiles: beside it, so that
    a repeat run (`--out`) does not replace the profiles the main run's figures came from."""
    return out.with_name(f"{out.stem}-profiles")

@dataclass(frozen=True)
class Target:
    """One of issue #23's targets after calibration: a summary figure's minimum."""

    key: str
    label: str
    minimum: float
    runtimes: tuple[str, ...]


TARGETS = (
    Target("within_10pct", "latency within ±10%", 0.90, ("onnxruntime-fp32", "onnxruntime-int8")),
    Target("spearman", "latency Spearman", 0.95, ("onnxruntime-fp32", "onnxruntime-int8")),
    Target("memory_within_25pct", "peak memory within ±25%", 0.90, RUNTIMES),
)
"""Issue #23's targets: latency for onnxruntime FP32 and int8, peak memory for every runtime."""

PACKED, RUNTIME_AWARE, CALIBRATED = "packed kernels (modelled)", "runtime-aware (modelled)", "calibrated"


def _progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 10 == 0:
        print(f"  {stage}: {done}/{total}", flush=True)


def _summary(report: ValidationReport) -> dict[str, Any]:
    data = report.to_dict()
    keys = ("within_10pct", "within_25pct", "spearman", "memory_within_10pct", "memory_within_25pct", "memory_spearman")
    figures = {key: data[key] for key in keys}
    return {"profile": report.target, "runtime": report.runtime, **figures, "worst_kinds": data["worst_kinds"]}


@dataclass(frozen=True)
class RuntimeMeasurements:
    """What one runtime's comparison needs from this machine: the validation set and the calibration grid measured."""

    runtime: str
    validation: dict[str, PreparedMeasurement]
    calibration: list[CaseMeasurement]
    provenance: dict[str, Any]


def measure_runtime(runtime: str, grid: str, model_set: str) -> RuntimeMeasurements:
    """Measure the validation set and the calibration grid with the runtime, timed together
    (`measure.time_graph_sets`): on this shared host, load that drifts between a calibration and
    a later validation would otherwise move one against the other."""
    backend = get_backend(runtime, export_onnx)
    validation_cases = VALIDATION_SETS[model_set]
    grid_cases = calibration_cases(GRIDS[grid], backend.weight_formats, backend.stem_pairs)
    print(f"{runtime}: exporting the validation set and the {grid} calibration grid", flush=True)
    validation_models, grid_models = lower_all(backend, validation_cases, _progress), lower_all(backend, grid_cases, _progress)
    print(f"{runtime}: timing both together", flush=True)
    validation_timings, grid_timings = time_graph_sets(
        [GraphSet(timed_graphs(validation_models), VALIDATION_TIMING), GraphSet(timed_graphs(grid_models), CALIBRATION_TIMING)],
        lambda done, total: _progress("timing", done, total),
    )  # fmt: skip
    provenance = {**host_provenance(runtime), "grid": grid, "base_profile": DEFAULT_BASE}
    validation = set_measurements(backend, validation_cases, validation_models, validation_timings, _progress)
    calibration = with_peak_memory(grid_cases, grid_models, grid_timings, _progress)
    return RuntimeMeasurements(runtime, validation, calibration, provenance)


def compare_profiles(measured: RuntimeMeasurements, model_set: str, profiles: Path) -> dict[str, Any]:
    """Fit the calibrated profile, then set the three profiles beside the same measurements."""
    runtime, cases = measured.runtime, VALIDATION_SETS[model_set]
    calibration = fit_profile(runtime, measured.calibration, DEFAULT_BASE, f"host-{runtime}", measured.provenance, host_hardware())
    profile_path = write_profile(calibration, profiles / f"host-{runtime}.yaml")
    base = load_target(DEFAULT_BASE)
    profiles = {
        PACKED: base,
        RUNTIME_AWARE: dataclasses.replace(base, runtime=runtime),
        CALIBRATED: load_target(profile_path),
    }
    reports = {stage: validate(profile, measured.validation, cases) for stage, profile in profiles.items()}
    for stage, report in reports.items():
        print(f"{runtime}, {stage}:")
        print_report(report, lambda line: print(f"  {line}"))
    models = [
        {
            "name": model.name,
            "family": model.family,
            "weights": model.weights,
            "measured_ms": model.measured_ms,
            "noise": model.noise,
            "measured_peak_bytes": model.measured_peak_bytes,
            "predicted_ms": {stage: report.models[index].predicted_ms for stage, report in reports.items()},
            "predicted_peak_bytes": {stage: report.models[index].predicted_peak_bytes for stage, report in reports.items()},
        }
        for index, model in enumerate(reports[CALIBRATED].models)
    ]
    return {
        "runtime": runtime,
        "calibration": {
            "profile": str(shown(profile_path)),
            "cases": len(calibration.measurements),
            "noise": calibration.noise,
            "fit": calibration.profile["measured"]["fit"],
        },
        "stages": {stage: _summary(report) for stage, report in reports.items()},
        "models": models,
    }


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue #23's targets against the calibrated figures, per runtime measured."""
    checks = {}
    for runtime, result in results.items():
        figures = result["stages"][CALIBRATED]
        for target in TARGETS:
            if runtime in target.runtimes:
                value = figures[target.key]
                checks[f"{runtime}: {target.label} >= {target.minimum:g}"] = {"value": value, "met": value >= target.minimum}
    return checks


def result_payload(results: dict[str, Any], grid: str, model_set: str, load_before: float, seconds: float) -> dict[str, Any]:
    """The benchmark's JSON: the machine and its load, the settings, per runtime the comparison, the targets."""
    return {
        "machine": host_provenance(",".join(results)),
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "grid": grid,
        "validation_set": model_set,
        "validation_models": len(VALIDATION_SETS[model_set]),
        "within_bounds": list(WITHIN),
        "wall_seconds": seconds,
        "runtimes": results,
        "targets": targets(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--quick", action="store_true", help="small grid and tiny validation set (checks the script)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    grid, model_set = ("small", "tiny") if args.quick else ("full", "full")
    out = args.out or (QUICK_OUT if args.quick else RESULTS / "cost_model_accuracy.json")
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    results = {}
    for runtime in args.runtimes:  # the JSON is rewritten after each runtime: a late failure keeps the earlier ones
        results[runtime] = compare_profiles(measure_runtime(runtime, grid, model_set), model_set, profile_folder(out))
        payload = result_payload(results, grid, model_set, load_before, time.monotonic() - started)
        write_result(out, payload)
    for name, check in payload["targets"].items():
        print(f"{name}: {check['value']:.3f} ({'met' if check['met'] else 'missed'})")


if __name__ == "__main__":
    main()
