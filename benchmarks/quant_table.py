"""Quantizer table: EER with a bootstrap 95% interval, minDCF and size per quantizer, width and PTQ/QAT.

From a ready config's cached teacher (default `configs/demo.yaml`, the demo ResNet; prepared
exactly as `search run` prepares it, so a second run starts at once), it measures:

- FP32, as trained and after the same fine-tuning as QAT gets (what the extra steps alone give);
- {8, 6, 4, 3, 2} bits x {uniform, pow2, kmeans} x {PTQ, QAT}, every quantizable layer at that width;
- 1-bit `binary` (static) and `binary-adaptive`, PTQ and QAT;
- a mixed-precision uniform assignment no larger (packed) than uniform 3-bit: each layer's loss
  increase is measured at every width (`evaluators.sensitivity`), then bits go greedily to the
  layers that gain most loss per extra bit (PTQ and QAT);
- two variants at 2 bits: k-means with TinyWASE's soft-step, uniform with MSFT.

QAT fine-tunes the teacher for `--steps` steps with `evaluators.finetune.FineTuner` (the config's
`fidelity:` settings otherwise). EER, minDCF and the interval come from all test pairs (a seeded
subset beyond `evaluation.max_trials`); the interval resamples target and non-target trials
(`bootstrap_eer_interval`). It then checks issue #3's three targets and writes
`results/benchmarks/quant_table.json` and `.md` (the Markdown table is also printed).

    .venv/bin/python benchmarks/quant_table.py [--steps 150] [--full] [--config configs/demo.yaml ...]

`--full` runs 600 steps and adds `configs/sv_ecapa.yaml` (ECAPA-TDNN).
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.finetune import FineTuner  # noqa: E402
from evaluators.finetune_data import sample_crops  # noqa: E402
from evaluators.finetune_loss import FineTuneLoss  # noqa: E402
from evaluators.metrics import all_pair_trials, bootstrap_eer_interval, equal_error_rate, minimum_dcf  # noqa: E402
from evaluators.sensitivity import layer_sensitivities  # noqa: E402
from evaluators.training import embed_utterances  # noqa: E402
from evaluators.verification import PreparedVerification, VerificationEvaluator  # noqa: E402
from search.config import load_config  # noqa: E402
from spaces.compress import CompressedModel, compress, quantizable_layers  # noqa: E402
from spaces.description import FLOAT_BITS  # noqa: E402
from spaces.plan import LayerQuantization  # noqa: E402
from render_docs import quant_table_markdown  # noqa: E402
from search.tasks.verification_setup import verification_setup  # noqa: E402

WIDTHS = (8, 6, 4, 3, 2)
QUANTIZERS = ("uniform", "pow2", "kmeans")
BINARY = ("binary", "binary-adaptive")
MIXED_WIDTHS = (2, 3, 4, 5, 6, 8)
MIXED_BUDGET_WIDTH = 3
OUT = ROOT / "results" / "benchmarks"


class _Table:
    """Measures rows for one prepared config, printing progress as it goes."""

    def __init__(self, prepared: PreparedVerification, steps: int, boot: int) -> None:
        self.prepared, self.steps, self.boot = prepared, steps, boot
        self.fidelity = dataclasses.replace(prepared.fidelity, steps=(steps,))
        self.layers = quantizable_layers(prepared.spec.build())
        self.rows: list[dict] = []
        self.reference_size = 0.0

    def measure(self, label: str, method: str, layers: Mapping[str, LayerQuantization], **fidelity) -> dict:
        """One row: the layers fine-tuned (`method` "QAT") or quantized post-training (otherwise)."""
        start = time.perf_counter()
        prepared = self.prepared
        if method == "QAT":
            config = dataclasses.replace(self.fidelity, **fidelity)
            tuner = FineTuner(
                prepared.spec, prepared.teacher_state, layers, prepared.fine_tune_data, config, prepared.seed,
                prepared.sensitivities,
            )
            tuner.train_to(self.steps)
            compressed = tuner.compressed()
        else:
            compressed = compress(
                prepared.spec,
                prepared.teacher_state,
                {name: layer.bits for name, layer in layers.items()},
                {name: layer.quantizer for name, layer in layers.items()},
            )
        row = {"weights": label, "method": method, **self._quality(compressed), **_size(compressed)}
        self.reference_size = self.reference_size or row["size_bytes"]
        row["compression"] = self.reference_size / row["size_bytes"]
        row["seconds"] = time.perf_counter() - start
        self.rows.append(row)
        print(
            f"  {label:<28} {method:<4} EER {100 * row['eer']:6.2f}% "
            f"[{100 * row['eer_low']:.2f}, {100 * row['eer_high']:.2f}]  minDCF {row['min_dcf']:.3f}  "
            f"{row['size_bytes']:>8,} B  {row['compression']:5.2f}x  ({row['seconds']:.0f} s)",
            flush=True,
        )
        return row

    def uniform_layers(self, quantizer: str, bits: int) -> dict[str, LayerQuantization]:
        return {name: LayerQuantization(bits, quantizer) for name in self.layers}

    def _quality(self, compressed: CompressedModel) -> dict[str, float]:
        prepared = self.prepared
        eval_set = prepared.eval_sets[0]
        embeddings = embed_utterances(compressed.model, eval_set.features).numpy()
        if eval_set.trials is None:
            scores, labels = all_pair_trials(embeddings, eval_set.labels, prepared.max_trials, prepared.seed)
        else:
            scores, labels = eval_set.trials.scores(embeddings), eval_set.trials.labels
        low, high = bootstrap_eer_interval(scores, labels, n_boot=self.boot, seed=prepared.seed)
        return {
            "eer": equal_error_rate(scores, labels),
            "eer_low": low,
            "eer_high": high,
            "min_dcf": minimum_dcf(scores, labels),
        }


def _size(compressed: CompressedModel) -> dict[str, float]:
    """Packed size, and the compression of the quantized layers alone (FP32 bits / code + side bits)."""
    quantized = [layer for layer in compressed.description.layers if layer.params and layer.weight_bits != FLOAT_BITS]
    stored = sum(layer.params * layer.weight_bits + layer.overhead_bits for layer in quantized)
    ratio = sum(layer.params * FLOAT_BITS for layer in quantized) / stored if stored else 1.0
    return {"size_bytes": compressed.description.size_bytes, "quantized_layer_compression": ratio}


def _width_sensitivities(prepared: PreparedVerification, fidelity) -> dict[int, dict[str, float]]:
    """Loss increase of each layer alone at every width of `MIXED_WIDTHS` (uniform quantizer)."""
    data = prepared.fine_tune_data
    generator = torch.Generator().manual_seed(prepared.seed)
    crops, labels = sample_crops(
        data.features, torch.tensor(data.labels), fidelity.sensitivity_crops, fidelity.crop_frames, generator
    )
    loss = FineTuneLoss.for_fidelity(data.centroids, fidelity)
    return {
        bits: layer_sensitivities(prepared.spec, prepared.teacher_state, loss, crops, labels, "uniform", bits)
        for bits in MIXED_WIDTHS
    }


def _allocate(sensitivity: Mapping[int, Mapping[str, float]], params: Mapping[str, int], budget: int) -> dict[str, int]:
    """Bits per layer with `sum(params * bits) <= budget`, greedily buying the most loss per bit.

    Every layer starts at the smallest width; each round moves one layer to whichever larger
    width gives the largest (clamped) loss decrease per added weight bit and still fits.
    """
    widths = sorted(sensitivity)
    bits = dict.fromkeys(params, widths[0])
    used = sum(params[layer] * bits[layer] for layer in params)
    while True:
        best = None
        for layer in params:
            current = max(0.0, sensitivity[bits[layer]][layer])
            for width in (width for width in widths if width > bits[layer]):
                cost = params[layer] * (width - bits[layer])
                gain = (current - max(0.0, sensitivity[width][layer])) / cost
                if used + cost <= budget and gain > 0 and (best is None or gain > best[0]):
                    best = (gain, layer, width, cost)
        if best is None:
            return bits
        _, layer, width, cost = best
        bits[layer], used = width, used + cost


def _mixed_layers(table: _Table, fidelity, target_size: int) -> tuple[dict[str, LayerQuantization], dict]:
    """The mixed uniform assignment whose packed size is at most `target_size`."""
    prepared = table.prepared
    sensitivity = _width_sensitivities(prepared, fidelity)
    params = _layer_params(prepared)
    budget = MIXED_BUDGET_WIDTH * sum(params.values())
    while True:  # bit packing rounds each tensor up to whole bytes: shrink the budget until it fits
        bits = _allocate(sensitivity, params, budget)
        size = compress(prepared.spec, prepared.teacher_state, bits, "uniform").description.size_bytes
        if size <= target_size:
            return {name: LayerQuantization(width, "uniform") for name, width in bits.items()}, sensitivity
        budget -= 8 * (size - target_size)


def measure_config(path: str, steps: int, boot: int) -> dict:
    """Every row and the targets of one config."""
    config = load_config(ROOT / path)
    config = dataclasses.replace(config, fidelity=dataclasses.replace(config.fidelity, steps=(0, steps)))
    start = time.perf_counter()
    prepared = VerificationEvaluator().prepare(verification_setup(config))
    print(f"{path}: prepared in {time.perf_counter() - start:.0f} s; QAT budget {steps} steps", flush=True)
    table = _Table(prepared, steps, boot)
    table.measure("FP32", "-", {})
    table.measure("FP32", "QAT", {})  # the same fine-tuning without quantization: what training alone gains
    for quantizer in QUANTIZERS:
        for bits in WIDTHS:
            for method in ("PTQ", "QAT"):
                table.measure(f"{quantizer} {bits}-bit", method, table.uniform_layers(quantizer, bits))
    for quantizer in BINARY:
        for method in ("PTQ", "QAT"):
            table.measure(f"{quantizer} 1-bit", method, table.uniform_layers(quantizer, 1))
    uniform3 = next(row for row in table.rows if row["weights"] == "uniform 3-bit")
    mixed, sensitivity = _mixed_layers(table, table.fidelity, uniform3["size_bytes"])
    for method in ("PTQ", "QAT"):
        table.measure("mixed (uniform 3-bit size)", method, mixed)
    table.measure("kmeans 2-bit soft-step", "QAT", table.uniform_layers("kmeans", 2), soft_step=True)
    table.measure("uniform 2-bit MSFT", "QAT", table.uniform_layers("uniform", 2), msft=True)
    return {
        "config": path,
        "family": prepared.spec.family,
        "params": sum(_layer_params(prepared).values()),
        "qat_steps": steps,
        "fidelity": dataclasses.asdict(table.fidelity),
        "mixed_bits": {name: layer.bits for name, layer in mixed.items()},
        "width_sensitivities": {str(bits): values for bits, values in sensitivity.items()},
        "rows": table.rows,
        "targets": _targets(table.rows),
        "seconds": time.perf_counter() - start,
    }


def _layer_params(prepared: PreparedVerification) -> dict[str, int]:
    model = prepared.spec.build()
    return {name: model.get_submodule(name).weight.numel() for name in quantizable_layers(model)}


def _targets(rows: list[dict]) -> dict[str, dict]:
    """Issue #3's targets, each with the figures it was judged on and whether it was met."""

    def row(weights: str, method: str) -> dict:
        return next(r for r in rows if r["weights"] == weights and r["method"] == method)

    fp32 = row("FP32", "-")
    targets = {}
    for quantizer in QUANTIZERS:
        point = row(f"{quantizer} 8-bit", "PTQ")
        relative = point["eer"] / fp32["eer"] - 1
        targets[f"8-bit PTQ {quantizer} within +2% relative EER of FP32 or its CI"] = {
            "relative_eer_change": relative,
            "fp32_ci_high": fp32["eer_high"],
            "met": relative <= 0.02 or point["eer"] <= fp32["eer_high"],
        }
    kmeans4 = row("kmeans 4-bit", "QAT")
    relative = kmeans4["eer"] / fp32["eer"] - 1
    targets["4-bit k-means QAT within +5% relative EER at >= 7.5x quantized-layer compression"] = {
        "relative_eer_change": relative,
        "relative_to_fp32_fine_tuned_alike": kmeans4["eer"] / row("FP32", "QAT")["eer"] - 1,
        "quantized_layer_compression": kmeans4["quantized_layer_compression"],
        "met": relative <= 0.05 and kmeans4["quantized_layer_compression"] >= 7.5,
    }
    for method in ("PTQ", "QAT"):
        mixed, uniform3 = row("mixed (uniform 3-bit size)", method), row("uniform 3-bit", method)
        targets[f"mixed precision beats uniform 3-bit ({method}) beyond its CI"] = {
            "mixed_eer": mixed["eer"],
            "uniform3_eer_ci": [uniform3["eer_low"], uniform3["eer_high"]],
            "mixed_size_bytes": mixed["size_bytes"],
            "uniform3_size_bytes": uniform3["size_bytes"],
            "met": mixed["eer"] < uniform3["eer_low"] and mixed["size_bytes"] <= uniform3["size_bytes"],
        }
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="ready config(s); default configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=None, help="QAT steps (default 150; 600 with --full)")
    parser.add_argument("--boot", type=int, default=None, help="bootstrap replicates (default 100; 200 with --full)")
    parser.add_argument("--full", action="store_true", help="600 steps, 200 replicates, ECAPA-TDNN as well")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.config or (["configs/demo.yaml", "configs/sv_ecapa.yaml"] if args.full else ["configs/demo.yaml"])
    steps = args.steps or (600 if args.full else 150)
    boot = args.boot or (200 if args.full else 100)
    start = time.perf_counter()
    results = [measure_config(path, steps, boot) for path in configs]
    payload = {
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - start,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quant_table.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    text = quant_table_markdown(payload)
    (args.out / "quant_table.md").write_text(text)
    print(text)
    print(f"wall time {payload['wall_seconds'] / 60:.1f} min; wrote {args.out / 'quant_table.json'} and .md")
    return 0


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")


if __name__ == "__main__":
    sys.exit(main())
