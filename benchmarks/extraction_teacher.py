"""SI-SDRi of the default FP32 extraction teacher, trained exactly as `search run` trains it.

The teacher of `configs/extraction.yaml` (or `--config`) is prepared by `ExtractionEvaluator`
(mixtures, then training; from the cache when the same teacher exists, unless `--fresh`, which
trains into a temporary cache) and scored on the fixed test mixtures. The JSON records the
figures, the model size and the wall-clock time of the preparation.

    .venv/bin/python benchmarks/extraction_teacher.py [--config configs/extraction.yaml] [--fresh]
        [--steps N] [--threads 2] [--out results/benchmarks/extraction_teacher.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluators.extraction import ExtractionEvaluator  # noqa: E402
from search.config import load_config  # noqa: E402
from search.tasks.extraction_setup import extraction_setup  # noqa: E402

TARGET_SI_SDRI_DB = 8.0
"""What the default teacher must reach for compression results to mean anything (issue #8)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/extraction.yaml")
    parser.add_argument("--steps", type=int, help="override teacher.steps")
    parser.add_argument("--fresh", action="store_true", help="train from scratch into a temporary cache")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2-core budget)")
    parser.add_argument("--out", default="results/benchmarks/extraction_teacher.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {"teacher.steps": args.steps} if args.steps else {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.fresh:
            overrides["cache_dir"] = scratch
        config = load_config(args.config, overrides)
        evaluator = ExtractionEvaluator()
        start = time.perf_counter()
        printer = _Printer()
        prepared = evaluator.prepare(extraction_setup(config), printer)
        prepare_seconds = time.perf_counter() - start
        start = time.perf_counter()
        reference = evaluator.evaluate_reference(prepared)
        score_seconds = time.perf_counter() - start
    metrics = reference.metrics
    result = {
        "config": args.config,
        "model": config.model,
        "teacher": dataclasses.asdict(config.teacher),
        "sample_rate": config.data.sample_rate,
        "test_mixtures": len(prepared.test_set),
        "level_db": list(config.mixtures.level_db),
        "si_sdri_db": round(metrics["si_sdri"], 3),
        "sdri_db": round(metrics["sdri"], 3),
        "reaches_target": metrics["si_sdri"] >= TARGET_SI_SDRI_DB,
        "target_si_sdri_db": TARGET_SI_SDRI_DB,
        "params": int(metrics["params"]),
        "size_bytes": int(metrics["size_bytes"]),
        "prepare_seconds": round(prepare_seconds, 1),
        "trained_now": printer.trained,
        "score_seconds": round(score_seconds, 1),
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


class _Printer:
    """Progress lines every 50 teacher steps (and at each stage's end); notes whether the teacher
    was trained now (so `prepare_seconds` is a training time) rather than read from the cache."""

    def __init__(self) -> None:
        self.trained = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.trained = self.trained or stage.startswith("teacher")
        if done == total or (stage.startswith("teacher") and done % 50 == 0):
            print(f"{stage}: {done}/{total}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
