"""A small synthetic run directory for the report tests: rows shaped as the engine writes them
(costs per target with the first target's copy unsuffixed, bookkeeping columns, a failed trial),
written without measuring anything so each test builds its own in milliseconds."""

from __future__ import annotations

from pathlib import Path

from search.run_dir import RunDirectory

OBJECTIVES = [{"metric": "eer", "direction": "min"}, {"metric": "size_bytes", "direction": "min"}]
REFERENCE = {
    "trial": "fp32", "status": "reference", "eer": 0.05, "min_dcf": 0.5, "size_bytes": 800_000.0,
    "compression_ratio": 1.0, "latency_ms@cortex-a72": 5.0, "latency_ms": 5.0, "latency_ms@x86-avx2": 1.5,
    "peak_memory_bytes": 1_000_000.0,
}


def trial_row(trial: int, bits: int, eer: float, size: float) -> dict:
    """A complete trial's row, uniform bits on two groups."""
    return {
        "trial": trial, "status": "complete", "bits.stem": bits, "bits.head": bits, "eer": eer, "min_dcf": 0.6,
        "size_bytes": size, "compression_ratio": 800_000.0 / size, "latency_ms@cortex-a72": 3.0, "latency_ms": 3.0,
        "latency_ms@x86-avx2": 0.9, "peak_memory_bytes": 500_000.0, "steps": 0, "feasible": True, "node": "f" * 56,
        "attempts": 1, "error": "", "seconds": 1.5,
    }


TRIALS = [
    trial_row(0, 8, 0.051, 200_000.0),
    trial_row(1, 4, 0.060, 100_000.0),
    {"trial": 2, "status": "failed", "bits.stem": 2, "bits.head": 2, "attempts": 2, "error": "ValueError: diverged",
     "seconds": None},
    trial_row(3, 6, 0.070, 180_000.0),
    trial_row(4, 3, 0.090, 90_000.0),
]
FRONT = [TRIALS[0], TRIALS[1], TRIALS[4]]
HYPERVOLUME = [0.1, 0.2, 0.2, 0.2, 0.3]


def make_report_run(path: Path, name: str = "synthetic <test>") -> RunDirectory:
    """The run written into the new folder `path`; its config's name needs HTML escaping."""
    path.mkdir()
    run = RunDirectory(path)
    run.write_config({"name": name, "objectives": [[o["metric"], o["direction"]] for o in OBJECTIVES]})
    run.write_reference(REFERENCE)
    for row in TRIALS:
        run.append_trial(row)
    run.write_pareto(OBJECTIVES, REFERENCE, FRONT)
    run.write_hypervolume(HYPERVOLUME)
    return run
