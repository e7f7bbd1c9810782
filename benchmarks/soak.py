"""Soak: a long NSGA-II search of cheap cached PTQ trials, watched for slowdowns and leaks.

A small synthetic corpus and a tiny ResNet keep every trial at post-training quantization, so
what is measured is the engine itself: Optuna's sampler over a growing study, Ray Tune's
bookkeeping, the run directory's files and the driver's memory. The driver's resident memory is
sampled after every finished trial (from /proc, Linux only).

Targets (the issue's): the driver grows by less than 100 MB over the run, throughput over the
last hundred trials is within 10% of the first hundred, and no trial fails.

    .venv/bin/python benchmarks/soak.py [--trials 500] [--workers 2] [--out results/benchmarks/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.config import load_config  # noqa: E402
from search.engine import SearchListener, run_search  # noqa: E402
from search.run_dir import RunDirectory  # noqa: E402

CONFIG = """
name: soak
seed: 0
cache_dir: {cache}
data: {{train_speakers: 8, test_speakers: 6, utterances_per_speaker: 4, min_seconds: 1.0, max_seconds: 1.5}}
features: {{num_mel_bins: 24}}
model: {{family: resnet, base_width: 4, blocks: [1, 1, 1, 1], embedding_dim: 16}}
teacher: {{steps: 20, batch_size: 8, crop_frames: 80}}
space: {{bits: [2, 3, 4, 5, 6, 8], granularity: stage}}
fidelity: {{steps: [0]}}
search: {{trials: {trials}, workers: {workers}, sampler: nsga2, population_size: 16}}
"""
WINDOW = 100
"""Trials per throughput window (the first and the last are compared); fewer on short runs."""


def resident_megabytes() -> float:
    """This process's resident memory (VmRSS) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Watcher(SearchListener):
    """Time and driver memory after each finished trial."""

    def __init__(self) -> None:
        self.samples: list[dict[str, float]] = []
        self.start = time.monotonic()

    def started(self, total_trials: int) -> None:
        self.start = time.monotonic()
        self.samples.append({"trials": 0, "seconds": 0.0, "rss_mb": resident_megabytes()})

    def trial_finished(self, row, trials, front) -> None:
        self.samples.append(
            {"trials": len(trials), "seconds": time.monotonic() - self.start, "rss_mb": resident_megabytes()}
        )


def per_minute(samples: list[dict[str, float]], first: int, last: int) -> float:
    """Trials per minute between the samples at `first` and `last` finished trials."""
    begin = next(sample for sample in samples if sample["trials"] >= first)
    end = next(sample for sample in samples if sample["trials"] >= last)
    return 60 * (end["trials"] - begin["trials"]) / max(end["seconds"] - begin["seconds"], 1e-9)


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "results" / "cache"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "soak.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "soak.yaml"
        path.write_text(CONFIG.format(cache=args.cache, trials=args.trials, workers=args.workers))
        config = load_config(path)
        run_dir = RunDirectory.create(Path(folder) / "results", config.name)
        watcher = Watcher()
        outcome = run_search(config, run_dir, listener=watcher)
        samples = watcher.samples
        window = min(WINDOW, max(1, len(outcome.trials) // 5))  # short smoke runs still get five windows
        windows = [
            {"from": start, "to": start + window, "trials_per_minute": per_minute(samples, start, start + window)}
            for start in range(0, len(outcome.trials) - window + 1, window)
        ]
        after_first = next(sample for sample in samples if sample["trials"] >= 1)
        result = {
            "trials": len(outcome.trials),
            "failed": sum(row["status"] == "failed" for row in outcome.trials),
            "reused": sum("reused_from" in row for row in outcome.trials),
            "workers": args.workers,
            "seconds": samples[-1]["seconds"],
            "windows": windows,
            "throughput_change": windows[-1]["trials_per_minute"] / windows[0]["trials_per_minute"] - 1,
            "driver_rss_mb": {"after_first_trial": after_first["rss_mb"], "end": samples[-1]["rss_mb"]},
            "driver_rss_growth_mb": samples[-1]["rss_mb"] - after_first["rss_mb"],
            "journal_bytes": run_dir.study_journal.stat().st_size,
            "run_directory_bytes": folder_bytes(run_dir.path),
            "samples": samples,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        }
    result["targets"] = {
        "rss_growth_below_100_mb": result["driver_rss_growth_mb"] < 100,
        "throughput_within_10_percent": result["throughput_change"] >= -0.10,
        "no_failed_trials": result["failed"] == 0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    summary = {key: result[key] for key in ("trials", "failed", "reused", "seconds", "throughput_change", "driver_rss_growth_mb")}
    print(json.dumps({**summary, "targets": result["targets"]}, indent=2))


if __name__ == "__main__":
    main()
