"""EER on real recorded speech (AN4), in-domain and cross-domain, at FP32 and after uniform PTQ.

Two teachers, each prepared exactly as `search run` prepares it from a ready config (features
and teacher come from the cache when present):

- `configs/sv_an4_train.yaml`: trained on AN4's 74 training speakers, evaluated on AN4's 10
  test speakers (in-domain) and on the synthetic corpus's test speakers (cross-domain);
- `configs/sv_an4.yaml`: the demo's teacher, trained on the synthetic corpus, evaluated on its
  synthetic test speakers (in-domain) and on AN4's test speakers (cross-domain).

Each is scored at FP32 and with every stage quantized post-training to each of `--bits`
(uniform, per-channel). The JSON holds every evaluation set's EER and minDCF per point.

    .venv/bin/python benchmarks/an4_eer.py [--bits 8 4 3] [--out results/benchmarks/an4_eer.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.verification import VerificationEvaluator  # noqa: E402
from search.config import load_config  # noqa: E402
from search.tasks.verification_setup import verification_setup  # noqa: E402

CONFIGS = ("configs/sv_an4_train.yaml", "configs/sv_an4.yaml")
AN4 = ROOT.parent / "shared" / "data" / "an4"


def measure_config(path: str, bits: list[int]) -> dict:
    """Teacher, evaluation sets and one row per weight precision for one config."""
    config = load_config(ROOT / path)
    evaluator = VerificationEvaluator()
    start = time.perf_counter()
    prepared = evaluator.prepare(verification_setup(config), _stage_printer(config.name))
    prepare_seconds = time.perf_counter() - start
    reference = evaluator.evaluate_reference(prepared)
    points = [_point("fp32", reference.metrics, reference.metrics["size_bytes"], prepared)]
    for width in bits:
        evaluation = evaluator.evaluate(prepared.space.uniform_candidate(width), prepared)
        points.append(_point(f"uniform {width}-bit", evaluation.metrics, reference.metrics["size_bytes"], prepared))
    return {
        "config": path,
        "train": _describe_source(config.data.train),
        "teacher_steps": config.teacher.steps,
        "eval_sets": [
            {
                "name": eval_set.name,
                "source": _describe_source(config_set.source),
                "utterances": len(eval_set.features),
                "speakers": len(set(eval_set.labels)),
                "trials": "all pairs" if eval_set.trials is None else len(eval_set.trials),
                "target_trials": None if eval_set.trials is None else int(eval_set.trials.labels.sum()),
            }
            for eval_set, config_set in zip(prepared.eval_sets, config.data.eval)
        ],
        "prepare_seconds": round(prepare_seconds, 1),
        "points": points,
    }


def _point(label: str, metrics: dict, reference_size: float, prepared) -> dict:
    row = {"weights": label, "size_bytes": int(metrics["size_bytes"])}
    row["compression"] = round(reference_size / metrics["size_bytes"], 2)
    for eval_set in prepared.eval_sets:
        row[f"eer_percent@{eval_set.name}"] = round(100 * metrics[f"eer@{eval_set.name}"], 2)
        row[f"min_dcf@{eval_set.name}"] = round(metrics[f"min_dcf@{eval_set.name}"], 3)
    return row


def _describe_source(source) -> str:
    if hasattr(source, "path"):
        return f"{source.corpus}:{source.path}"
    return f"synthetic ({source.train_speakers} train / {source.test_speakers} test speakers, seed {source.seed})"


def _stage_printer(name: str):
    last = {}

    def show(stage: str, done: int, total: int) -> None:
        key = stage.split(" (")[0]
        if done == total or time.monotonic() - last.get(key, 0.0) > 30:
            last[key] = time.monotonic()
            print(f"[{name}] {stage}: {done}/{total}", flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4, 3], help="uniform PTQ bit widths (default 8 4 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "an4_eer.json")
    args = parser.parse_args(argv)
    if not AN4.is_dir():
        print(f"AN4 not found at {AN4}; nothing to measure", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # the configs name corpora relative to the project root
    torch.set_num_threads(2)
    start = time.perf_counter()
    results = [measure_config(path, args.bits) for path in CONFIGS]
    payload = {
        "benchmark": "an4_eer",
        "command": "python benchmarks/an4_eer.py " + " ".join(["--bits", *map(str, args.bits)]),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "seconds": round(time.perf_counter() - start, 1),
        "teachers": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    for teacher in results:
        print(teacher["config"])
        for point in teacher["points"]:
            prefix = "eer_percent@"
            eers = ", ".join(f"{key[len(prefix):]} {value:.2f}%" for key, value in point.items() if prefix in key)
            print(f"  {point['weights']:>14}  {point['size_bytes']:>8} B  {point['compression']:>5.2f}x  EER {eers}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
