"""Compressed speaker extractors vs the FP32 teacher: SI-SDRi, SDRi, size and compression ratio.

From the cached teacher of `configs/extraction.yaml` (prepared exactly as `search run` prepares
it), every row is a candidate of the config's own space, measured by `ExtractionEvaluator` as a
trial is: uniform weights at 8, 4 and 3 bits after post-training quantization (PTQ), then 3 bits
after `--steps` steps of quantization-aware training (QAT) without and with output distillation
from the FP32 teacher (lambda = 1), 3 bits + distillation with the separator's stacks sharing one
set of weights, and that again with 8-bit activations (TinyWASE's setting).

Two compression ratios are reported: of the packed file against the FP32 teacher's
(`size_bytes`, everything stored), and of the part TinyWASE's ratio covers (encoder, separator
and decoder: every layer except the voiceprint branch), weights and their side data (biases,
norm terms, scales, codebooks; float16 when the config's `space.side_bits` is 16, as the
default's is) counted, shared weights once. Targets (issue #8): 3-bit QAT +
distillation within 0.5 dB SI-SDRi of FP32 at >= 8.5x compression of that part; with sharing
>= 20x.

    .venv/bin/python benchmarks/extraction_table.py [--config configs/extraction.yaml] [--steps 300]
        [--threads 2] [--out results/benchmarks/extraction_table.json]

Writes the JSON (rows, targets, settings, wall time) and the Markdown table beside it (also printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluators.extraction import ExtractionEvaluator, PreparedExtraction  # noqa: E402
from search.config import load_config  # noqa: E402
from spaces.description import ModelDescription  # noqa: E402
from render_docs import extraction_table_markdown  # noqa: E402
from search.tasks.extraction_setup import extraction_setup  # noqa: E402

OUTSIDE_RATIO = ("voiceprint",)
"""Layer groups left out of the compression ratio TinyWASE reports (encoder, separator, decoder)."""
WITHIN_DB = 0.5
RATIO_QUANTIZED = 8.5
RATIO_SHARED = 20.0


@dataclasses.dataclass(frozen=True)
class Row:
    """One compressed variant: its label, weight bits, the candidate's other knobs and QAT steps."""

    label: str
    bits: int
    knobs: Mapping[str, Any]
    steps: int


def rows(steps: int) -> list[Row]:
    distill = {"distill.weight": 1.0}
    return [
        Row("8-bit PTQ", 8, {}, 0),
        Row("4-bit PTQ", 4, {}, 0),
        Row("3-bit PTQ", 3, {}, 0),
        Row("3-bit QAT", 3, {"distill.weight": 0.0}, steps),
        Row("3-bit QAT + distillation", 3, distill, steps),
        Row("3-bit QAT + distillation + sharing", 3, {**distill, "share": True}, steps),
        Row("3-bit QAT + distillation + sharing, 8-bit activations", 3, {**distill, "share": True, "activation_bits": 8}, steps),
    ]


def covered_bytes(description: ModelDescription, groups: Mapping[str, list[str]]) -> float:
    """Stored bytes of the layers the ratio covers: codes, side data and extras; shared tensors once."""
    outside = {layer for group in OUTSIDE_RATIO for layer in groups.get(group, ())}
    total_bits = 0
    for layer in description.layers:
        if layer.name in outside or layer.name.split(".")[0] in OUTSIDE_RATIO:
            continue
        total_bits += layer.stored_weight_bits
    return total_bits / 8


def measure(prepared: PreparedExtraction, row: Row | None, fp32: dict | None) -> dict:
    """SI-SDRi, SDRi and sizes of one variant (None: the FP32 teacher) with both ratios against `fp32`."""
    evaluator = ExtractionEvaluator()
    start = time.perf_counter()
    if row is None:
        evaluation = evaluator.evaluate_reference(prepared)
    else:
        candidate = {**prepared.space.uniform_candidate(row.bits), **row.knobs}
        fidelity = dataclasses.replace(prepared.fidelity, steps=(row.steps,))
        evaluation = evaluator.evaluate(candidate, dataclasses.replace(prepared, fidelity=fidelity))
    groups = evaluation.compressed.model.layer_groups()
    result = {
        "label": "FP32" if row is None else row.label,
        "steps": 0 if row is None else row.steps,
        "si_sdri": evaluation.metrics["si_sdri"],
        "sdri": evaluation.metrics["sdri"],
        "size_bytes": int(evaluation.metrics["size_bytes"]),
        "mean_weight_bits": evaluation.metrics["mean_weight_bits"],
        "covered_bytes": covered_bytes(evaluation.compressed.description, groups),
        "seconds": round(time.perf_counter() - start, 1),
    }
    reference = fp32 or result
    result["compression"] = reference["size_bytes"] / result["size_bytes"]
    result["covered_compression"] = reference["covered_bytes"] / result["covered_bytes"]
    result["delta_si_sdri"] = result["si_sdri"] - reference["si_sdri"]
    return result


def targets(results: list[dict]) -> dict:
    by_label = {result["label"]: result for result in results}
    distilled = by_label["3-bit QAT + distillation"]
    shared = by_label["3-bit QAT + distillation + sharing"]
    return {
        "distilled_3_bit_within_0_5_db": distilled["delta_si_sdri"] >= -WITHIN_DB,
        "distilled_3_bit_ratio_at_least_8_5": distilled["covered_compression"] >= RATIO_QUANTIZED,
        "shared_ratio_at_least_20": shared["covered_compression"] >= RATIO_SHARED,
        "shared_within_0_5_db": shared["delta_si_sdri"] >= -WITHIN_DB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/extraction.yaml"))
    parser.add_argument("--steps", type=int, default=300, help="QAT steps of the fine-tuned rows")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/extraction_table.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = load_config(args.config)
    prepared = ExtractionEvaluator().prepare(extraction_setup(config), lambda stage, done, total: print(f"  {stage}: {done}/{total}", end="\r"))
    fp32 = measure(prepared, None, None)
    results = [fp32]
    print(f"\n{fp32['label']}: SI-SDRi {fp32['si_sdri']:.2f} dB, {fp32['size_bytes']:,} B")
    for row in rows(args.steps):
        results.append(measure(prepared, row, fp32))
        last = results[-1]
        print(f"{row.label}: SI-SDRi {last['si_sdri']:.2f} dB ({last['delta_si_sdri']:+.2f}), "
              f"{last['size_bytes']:,} B, {last['covered_compression']:.2f}x ({last['seconds']:.0f} s)")
    payload = {
        "command": " ".join(["benchmarks/extraction_table.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": args.config,
        "qat_steps": args.steps,
        "test_mixtures": len(prepared.test_set),
        "ratio_covers": "every layer except the voiceprint branch (encoder, separator, decoder), side data included",
        "side_bits": config.space.side_bits,
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "rows": results,
        "targets": targets(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    table = extraction_table_markdown(payload)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"targets: {payload['targets']}; wall time {payload['wall_seconds'] / 60:.1f} min; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
