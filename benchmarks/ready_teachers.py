"""The ready configs' FP32 teachers and their uniform post-training quantizations: EER, minDCF, size.

Each config is prepared exactly as `search run` prepares it (features and teacher from the
cache when a run or benchmark already trained them; trained now otherwise), then its teacher is
scored at FP32 and as the config's uniform baseline at each of `--bits` (every bits knob at that
width, the space's default quantizer). Writes `results/benchmarks/ready_teachers.json`.

    .venv/bin/python benchmarks/ready_teachers.py [CONFIG ...] [--bits 8 4] [--out results/benchmarks/ready_teachers.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.evaluation import Evaluation  # noqa: E402
from search.config import load_config  # noqa: E402
from search.tasks import get_task  # noqa: E402
from render_docs import RESULTS, write_result  # noqa: E402

CONFIGS = ("configs/sv_resnet.yaml", "configs/sv_ecapa.yaml", "configs/sv_xvector.yaml")


def point(weights: str, evaluation: Evaluation, reference_size: float) -> dict[str, Any]:
    metrics = evaluation.metrics
    return {
        "weights": weights,
        "eer": metrics["eer"],
        "min_dcf": metrics["min_dcf"],
        "size_bytes": int(metrics["size_bytes"]),
        "compression": reference_size / metrics["size_bytes"],
    }


def measure_config(path: str, bits: list[int]) -> dict[str, Any]:
    """The teacher's FP32 row and one uniform PTQ row per width."""
    config = load_config(ROOT / path)
    task = get_task(config.task)
    evaluator = task.evaluator()
    start = time.perf_counter()
    prepared = evaluator.prepare(task.setup(config), lambda stage, done, total: print(f"  {path} {stage}: {done}/{total}", end="\r"))
    reference = evaluator.evaluate_reference(prepared)
    size = reference.metrics["size_bytes"]
    points = [point("fp32", reference, size)]
    for width in bits:
        evaluation = evaluator.evaluate(prepared.space.uniform_candidate(width), prepared)
        points.append(point(f"uniform {width}-bit", evaluation, size))
    print(f"\n{path}: " + ", ".join(f"{p['weights']} EER {100 * p['eer']:.2f}%" for p in points), flush=True)
    return {
        "config": path,
        "family": config.model["family"],
        "params": int(reference.metrics["params"]),
        "teacher_steps": config.teacher.steps,
        "seconds": round(time.perf_counter() - start, 1),
        "points": points,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=list(CONFIGS), help="ready configs (default: the three sv_*.yaml families)")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4], help="uniform PTQ widths (default 8 4)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ready_teachers.json")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the configs name their cache relative to the project root
    start = time.perf_counter()
    teachers = [measure_config(path, args.bits) for path in args.configs]
    payload = {"bits": args.bits, "wall_seconds": round(time.perf_counter() - start, 1), "teachers": teachers}
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
