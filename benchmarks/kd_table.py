"""Distilled students vs their teacher: packed size and EER (bootstrap 95% interval) per width and tap mix.

For each teacher, students at widths 1/2, 1/4 and 1/8 of its channels train for the same step
budget from a random initialisation, four ways: from scratch (AAM-softmax only), distilling the
utterance level (the embedding), the frame level (the last frame-level layer), or both
concatenated into one target (Liu, Sahidullah and Kinnunen 2023). The best mix at width 1/4 is
then trained again with 4-bit weights (distillation-aware quantization, TinyWASE) and again from
the teacher-slice initialisation (the engine's default), so the table also shows what each buys.
Last, the slice-initialised 1/4 student trains for a long budget (`--long-steps`, default 2,400:
four times the teachers' own) three ways: distilled, without distillation (AAM-softmax only, so
the table separates what distillation adds from what the slice and the budget add), and
distilled with 4-bit weights.

Default: the x-vector teacher of configs/sv_distill.yaml and the ECAPA-TDNN teacher of
configs/sv_ecapa.yaml (demo sizes), 150 steps per student (a quarter of the teachers' budget),
one process per teacher (the two cores). `--full`: 600 steps per student, the teachers' own budget.
Teachers, features and the head initialisation come from the run cache (prepared once).

    .venv/bin/python benchmarks/kd_table.py [--full] [--steps N] [--long-steps N]
        [--out results/benchmarks/kd_table.json]

Prints every row as it finishes; writes the JSON (rows, targets, settings, wall time) after each
teacher and the Markdown table next to it at the end (also printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.metrics import all_pair_trials, bootstrap_eer_interval, equal_error_rate, minimum_dcf
from evaluators.student_training import DistillationConfig, StudentTrainer
from evaluators.training import embed_utterances
from evaluators.verification import PreparedVerification, VerificationEvaluator
from search.config import load_config
from spaces.compress import CompressedModel, compress, quantizable_layers
from spaces.plan import CompressionPlan, DistillationPlan, LayerQuantization, StudentPlan
from render_docs import kd_table_markdown
from search.tasks.verification_setup import verification_setup  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (0.5, 0.25, 0.125)
BEST_MIX_WIDTH = 0.25
LONG_STEPS = 2400
QUANTIZED_BITS = 4
BOOTSTRAP_REPLICATES = 100


@dataclass(frozen=True)
class Teacher:
    """A teacher to distil: its ready config and the taps that stand for each level."""

    config: str
    frame_tap: str
    utterance_tap: str = "embedding"

    def mixes(self) -> dict[str, DistillationPlan | None]:
        return {
            "scratch": None,
            "utterance": DistillationPlan((self.utterance_tap,)),
            "frame": DistillationPlan((self.frame_tap,)),
            "concat": DistillationPlan((self.frame_tap, self.utterance_tap), mode="concat"),
        }


TEACHERS = {"xvector": Teacher("configs/sv_distill.yaml", "frame5"), "ecapa_tdnn": Teacher("configs/sv_ecapa.yaml", "mfa")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="600 steps per student (the teachers' budget)")
    parser.add_argument("--steps", type=int, help="steps per student (default 150, 600 with --full)")
    parser.add_argument("--long-steps", type=int, default=LONG_STEPS, help="budget of the long slice-initialised rows")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/kd_table.json")
    args = parser.parse_args()
    steps = args.steps or (600 if args.full else 150)
    started = time.time()
    result = {"steps": steps, "long_steps": args.long_steps, "widths": list(WIDTHS), "bits_row": QUANTIZED_BITS}
    rows: dict[str, list[dict]] = {}
    with ProcessPoolExecutor(max_workers=len(TEACHERS), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_teacher_rows, family, steps, args.long_steps): family for family in TEACHERS}
        for future in as_completed(futures):
            rows[futures[future]] = future.result()
            result["rows"] = [row for family in TEACHERS for row in rows.get(family, [])]
            result["targets"] = {family: _targets(rows[family], steps, args.long_steps) for family in rows}
            result["wall_seconds"] = round(time.time() - started, 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    table = kd_table_markdown(result)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(json.dumps(result["targets"], indent=2))


def _teacher_rows(family: str, steps: int, long_steps: int) -> list[dict]:
    """Every row of one teacher (run in its own process, one thread)."""
    torch.set_num_threads(1)  # small models: threads cost more than they give on shared cores
    teacher = TEACHERS[family]
    ladder = {"fidelity": {"steps": [steps], "batch_size": 32, "crop_frames": 150}}
    prepared = VerificationEvaluator().prepare(verification_setup(load_config(ROOT / teacher.config, ladder)), lambda *_: None)
    reference = compress(prepared.spec, prepared.teacher_state, {})
    rows = [_printed(_row(family, "teacher", 1.0, "-", 32, 0, None, reference, prepared, 0.0))]

    def student(width: float, mix: str, init: str, layers: dict, budget: int) -> None:
        rows.append(_printed(_student(family, width, mix, teacher.mixes()[mix], init, layers, budget, prepared, rows[0])))

    for width in WIDTHS:
        for mix in teacher.mixes():
            student(width, mix, "random", {}, steps)
    quarter = [row for row in rows if row["width"] == BEST_MIX_WIDTH and row["mix"] != "scratch"]
    best = min(quarter, key=lambda row: row["eer"])["mix"]
    layers = {name: LayerQuantization(QUANTIZED_BITS) for name in quantizable_layers(prepared.spec.build())}
    student(BEST_MIX_WIDTH, best, "random", layers, steps)
    student(BEST_MIX_WIDTH, best, "slice", {}, steps)
    for mix, quantized in ((best, {}), ("scratch", {}), (best, layers)):
        student(BEST_MIX_WIDTH, mix, "slice", quantized, long_steps)
    return rows


def _student(
    family: str,
    width: float,
    mix: str,
    distillation: DistillationPlan | None,
    init: str,
    layers: dict[str, LayerQuantization],
    steps: int,
    prepared: PreparedVerification,
    teacher_row: dict,
) -> dict:
    plan = CompressionPlan(layers=layers, student=StudentPlan(family, width), distillation=distillation)
    config = DistillationConfig(init=init)
    started = time.time()
    fidelity = dataclasses.replace(prepared.fidelity, steps=(steps,))
    trainer = StudentTrainer(
        prepared.spec, prepared.teacher_state, plan, prepared.fine_tune_data, fidelity, config, prepared.seed
    )
    trainer.train_to(steps)
    bits = QUANTIZED_BITS if layers else 32
    return _row(family, mix, width, init, bits, steps, teacher_row, trainer.compressed(), prepared, time.time() - started)


def _row(
    family: str,
    mix: str,
    width: float,
    init: str,
    bits: int,
    steps: int,
    teacher_row: dict | None,
    compressed: CompressedModel,
    prepared: PreparedVerification,
    seconds: float,
) -> dict:
    embeddings = embed_utterances(compressed.model, prepared.test_features).numpy()
    scores, labels = all_pair_trials(embeddings, prepared.test_labels, prepared.max_trials, prepared.seed)
    low, high = bootstrap_eer_interval(scores, labels, n_boot=BOOTSTRAP_REPLICATES, seed=prepared.seed)
    size = compressed.description.size_bytes
    row = {
        "teacher": family,
        "mix": mix,
        "width": width,
        "init": init,
        "bits": bits,
        "steps": steps,
        "params": compressed.description.params,
        "size_bytes": size,
        "eer": equal_error_rate(scores, labels),
        "eer_low": low,
        "eer_high": high,
        "min_dcf": minimum_dcf(scores, labels),
        "train_seconds": round(seconds, 1),
    }
    if teacher_row is not None:
        row["size_reduction"] = 1.0 - size / teacher_row["size_bytes"]
        row["relative_eer"] = row["eer"] / teacher_row["eer"] - 1.0
    return row


def _targets(rows: list[dict], steps: int, long_steps: int) -> dict:
    """The issue's three targets, checked on one teacher's rows (plus what distillation adds at the long budget)."""
    students = [row for row in rows if row["mix"] != "teacher"]
    small = [row for row in students if row["size_reduction"] >= 0.75]
    best_small = min(small, key=lambda row: row["eer"])
    plain = [row for row in students if row["init"] == "random" and row["bits"] == 32 and row["steps"] == steps]
    by_width = {width: {row["mix"]: row for row in plain if row["width"] == width} for width in WIDTHS}
    long = {row["mix"]: row for row in students if row["steps"] == long_steps and row["bits"] == 32}
    keys = ("mix", "width", "init", "bits", "steps", "size_reduction", "relative_eer")
    return {
        "smaller_by_75pct_within_10pct_eer": {
            "met": best_small["relative_eer"] <= 0.10,
            "best": {key: best_small[key] for key in keys},
        },
        "distillation_beats_scratch": {
            str(width): {
                "met": min(row["eer"] for mix, row in mixes.items() if mix != "scratch") < mixes["scratch"]["eer"],
                "beyond_interval": min(row["eer_high"] for mix, row in mixes.items() if mix != "scratch")
                < mixes["scratch"]["eer_low"],
            }
            for width, mixes in by_width.items()
        },
        "distillation_beats_slice_fine_tuning_at_long_budget": min(
            row["eer"] for mix, row in long.items() if mix != "scratch"
        )
        < long["scratch"]["eer"],
        "concat_at_least_as_good_as_either_level": {
            str(width): mixes["concat"]["eer"] <= min(mixes["utterance"]["eer"], mixes["frame"]["eer"])
            for width, mixes in by_width.items()
        },
    }


def _printed(row: dict) -> dict:
    print(
        f"{row['teacher']:>10} {row['mix']:>9} w={row['width']:<5} {row['init']:>6} {row['bits']:>2}b "
        f"{row['steps']:>5} steps size={row['size_bytes']:>9,} EER={100 * row['eer']:.2f}% "
        f"[{100 * row['eer_low']:.2f}, {100 * row['eer_high']:.2f}] ({row['train_seconds']} s)",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main()
