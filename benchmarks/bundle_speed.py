"""FP32 against integer (QDQ) bundles on onnxruntime: every family at demo, mid and full size (issue #24).

For each model: the FP32 graph as `search export` writes it, and the graph it writes for the same
model compressed with 8-bit weights and 8-bit activations: the plan of such a candidate trains
its 8-bit uniform layers on the integer kernels' range (`uniform` -> `uniform-reduced`,
`spaces.plan.CompressionPlan`), activation quantizers sit where onnxruntime fuses integer kernels
(`spaces.quant.integer_activations`, calibrated on `CALIBRATION_BATCHES` random inputs), and
`search.onnx_export` writes the QDQ graph (`search.qdq_export`). Weights are the seeded random
initialisation: timing does not depend on their values. Per model:

- FP32 and int8 latency for one second of input (100 filterbank frames; the extractor one second
  of mixture and of enrollment), batch 1, one onnxruntime thread: the median per-thread CPU time,
  in rounds interleaved across all graphs and bracketed by the load reference
  (`hwcost.calibration.measure.time_graphs`), expressed at the least loaded reference speed of
  the run, so that the speedup compares two ratios measured together;
- how many of its quantized layers onnxruntime runs on integer kernels (its optimised graph,
  `search.kernel_census`), and why the others are not (the export's record);
- the int8 graph's outputs against the in-run PyTorch model on fresh random inputs (cosine and
  largest difference over the largest output), and the same for full-range signed weights
  (`uniform`, levels to ±127) exported without the ±64 limit: whether u8 x s8 saturates here.

Issue #24's target: the int8 bundle at least 1.5x faster than FP32 for resnet, ecapa_tdnn and
xvector at mid and full size; GE2E and the extractor report their figure. The sizes are the
families' constructor arguments: demo as the ready configs (`search/configs/`; GE2E's config is
the full model, its demo and mid are narrower), full the published models, mid in between.
Writes `results/benchmarks/bundle_speed.json` (docs table: `benchmarks/render_docs.py`); the
load average at the start and the end is in it. `--quick` times the demo sizes only and writes
`benchmarks/out/bundle_speed_quick.json`.

    .venv/bin/python benchmarks/bundle_speed.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwcost.calibration.backends import FloatBackend  # noqa: E402
from hwcost.calibration.cases import ModelCase  # noqa: E402
from hwcost.calibration.measure import TimingPlan, host_provenance, reference_ms, session_options, time_graphs  # noqa: E402
from hwcost.runtimes import INT8  # noqa: E402
from render_docs import RESULTS, write_result  # noqa: E402
from search.kernel_census import kernel_census  # noqa: E402
from search.onnx_export import export_onnx  # noqa: E402
from search.qdq_export import IntegerRecord  # noqa: E402
from spaces.compress import ModelSpec, finalize_compressed, quantizable_layers  # noqa: E402
from spaces.plan import CompressionPlan, LayerQuantization  # noqa: E402
from spaces.quant import INTEGER_ACTIVATION_BITS, QuantizedWeight, get_quantizer  # noqa: E402
from spaces.quant.integer_activations import INTEGER_LAYER_TYPES, activation_points, attach_activation_quantizers, integer_layers  # noqa: E402

QUICK_OUT = ROOT / "benchmarks" / "out" / "bundle_speed_quick.json"
TIMING = TimingPlan(warmup_runs=3, min_runs=20, min_cpu_seconds=1.0, rounds=5)
CALIBRATION_BATCHES = 4
"""Random inputs the activation quantizers observe before they freeze."""
CHECK_SEED = 7
WEIGHT_BITS = 8
FULL_RANGE_LEVEL = 127
"""Largest level of a full-range signed 8-bit grid (the `uniform` quantizer at 8 bits)."""
TARGET_SPEEDUP = 1.5
TARGET_FAMILIES = ("resnet", "ecapa_tdnn", "xvector")
TARGET_SIZES = ("mid", "full")
FRAMES = 100
SAMPLE_RATES = {"extractor": 8000}


def _sizes(demo: dict[str, Any], mid: dict[str, Any], full: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"demo": demo, "mid": mid, "full": full}


SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "resnet": _sizes(
        dict(num_mel_bins=40, base_width=8, blocks=(1, 1, 1, 1), embedding_dim=128),
        dict(num_mel_bins=80, base_width=16, blocks=(2, 2, 2, 2), embedding_dim=256),
        dict(num_mel_bins=80, base_width=32, blocks=(3, 4, 6, 3), embedding_dim=256),  # WeSpeaker's ResNet34
    ),
    "ecapa_tdnn": _sizes(
        dict(num_mel_bins=40, channels=64, scale=4, se_channels=16, attention_channels=16, mfa_channels=192, embedding_dim=128),
        dict(num_mel_bins=80, channels=256, scale=8, se_channels=64, attention_channels=64, mfa_channels=768, embedding_dim=192),
        dict(num_mel_bins=80, channels=512, scale=8, se_channels=128, attention_channels=128, mfa_channels=1536, embedding_dim=192),
    ),
    "xvector": _sizes(
        dict(num_mel_bins=40, channels=128, pooling_channels=384, embedding_dim=128),
        dict(num_mel_bins=80, channels=256, pooling_channels=768, embedding_dim=256),
        dict(num_mel_bins=80, channels=512, pooling_channels=1500, embedding_dim=512),  # Snyder et al. 2018
    ),
    "ge2e": _sizes(
        dict(num_mel_bins=40, hidden_size=64, embedding_dim=64, num_layers=2),
        dict(num_mel_bins=40, hidden_size=128, embedding_dim=128, num_layers=3),
        dict(num_mel_bins=40, hidden_size=256, embedding_dim=256, num_layers=3),  # resemblyzer
    ),
    "extractor": _sizes(
        dict(filters=256, window=32, bottleneck=64, hidden=128, skip_channels=64, kernel_size=3, blocks=4, stacks=3,
             embedding_dim=64, voiceprint_blocks=2),
        dict(filters=256, window=16, bottleneck=128, hidden=256, skip_channels=128, kernel_size=3, blocks=6, stacks=3,
             embedding_dim=128, voiceprint_blocks=3),
        dict(filters=512, window=16, bottleneck=128, hidden=512, skip_channels=128, kernel_size=3, blocks=8, stacks=4,
             embedding_dim=256, voiceprint_blocks=4),  # Conv-TasNet's separator
    ),
}  # fmt: skip
"""Family -> size -> constructor arguments."""


def model_case(family: str, size: str) -> ModelCase:
    """The family's model at `size`, with one second of input."""
    arguments = SIZES[family][size]
    if family == "extractor":
        spec = ModelSpec(family, arguments, 0, 0, SAMPLE_RATES[family])
        return ModelCase(f"{family}-{size}", spec, ("mixture", "enrollment"))
    bins = arguments["num_mel_bins"]
    return ModelCase(f"{family}-{size}", ModelSpec(family, arguments, bins, FRAMES, 16000), ("features",))


@dataclass
class IntegerBundle:
    """The integer graph of a case and the in-run model it was exported from."""

    graph: onnx.ModelProto
    model: torch.nn.Module
    examples: dict[str, torch.Tensor]
    quantized: dict[str, QuantizedWeight]


def integer_bundle(case: ModelCase, quantizer: str, largest_level: int | None = None) -> IntegerBundle:
    """Every quantizable layer at 8 bits of `quantizer` (as the plan of an 8-bit-activation
    candidate gives it), activations quantized where integer kernels fuse, calibrated and frozen.

    Args:
        largest_level: Export int8 weights up to this level, and place activation quantizers
            around every convolution and linear layer whatever its range (the saturation check);
            None: the kernels' safe range, quantizers where `integer_layers` says.
    """
    model = case.model().eval()
    layers = quantizable_layers(model)
    weights = {name: LayerQuantization(WEIGHT_BITS, quantizer) for name in layers}
    quantized = {name: get_quantizer(layer.quantizer).quantize(model.get_submodule(name).weight, WEIGHT_BITS) for name, layer in weights.items()}
    compressed = finalize_compressed(case.spec, model, quantized)
    examples = dict(zip(case.input_names, case.spec.example_inputs(compressed.model)))
    in_run = compressed.model
    if largest_level is None:
        layers = integer_layers(in_run, weights)
    else:
        layers = [name for name in weights if isinstance(in_run.get_submodule(name), INTEGER_LAYER_TYPES)]
    points = activation_points(in_run, tuple(examples.values()), layers)
    quantizers = attach_activation_quantizers(in_run, points)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            in_run(*(torch.randn(tensor.shape, generator=generator) for tensor in examples.values()))
    for activation in quantizers.values():
        activation.freeze()
    extra = {} if largest_level is None else {"largest_weight_level": largest_level}
    graph = export_onnx(in_run, quantized, examples, ["output"], {}, **extra)
    return IntegerBundle(graph, in_run, examples, quantized)


def agreement(bundle: IntegerBundle) -> dict[str, float]:
    """onnxruntime's outputs of the graph against the in-run model's, on fresh random inputs."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    inputs = {name: torch.randn(tensor.shape, generator=generator) for name, tensor in bundle.examples.items()}
    session = onnxruntime.InferenceSession(bundle.graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    (measured,) = session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
    with torch.no_grad():
        expected = bundle.model(*inputs.values()).numpy()
    measured, expected = measured.reshape(-1), expected.reshape(-1)
    cosine = float(measured @ expected / (np.linalg.norm(measured) * np.linalg.norm(expected)))
    return {"cosine": round(cosine, 6), "max_error": float(np.abs(measured - expected).max() / np.abs(expected).max())}


def pair_saturation() -> dict[str, float]:
    """A 1x1 convolution whose two products both reach `255 * 127`, exported with full-range
    weights: AVX2 without VNNI sums each pair into int16 (`vpmaddubsw`, saturating at 32767),
    so it returns about half the exact output; VNNI and AMX kernels accumulate in int32."""
    model = nn.Sequential(nn.Conv1d(2, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    quantized = {"0": get_quantizer("uniform").quantize(model[0].weight, WEIGHT_BITS)}  # levels 127
    ones = torch.ones(1, 2, 4)
    quantizers = attach_activation_quantizers(model, activation_points(model, (ones,), ["0"]))
    with torch.no_grad():
        model(ones)  # inputs at the top of their unsigned grid: code 255
    for activation in quantizers.values():
        activation.freeze()
    graph = export_onnx(model, quantized, {"signal": ones}, ["output"], {}, largest_weight_level=FULL_RANGE_LEVEL)
    session = onnxruntime.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = float(model(ones).max())
    return {"expected": expected, "onnxruntime": float(session.run(None, {"signal": ones.numpy()})[0].max())}


def integer_plan_quantizer() -> str:
    """The quantizer an 8-bit uniform layer of an 8-bit-activation candidate trains with."""
    plan = CompressionPlan({"layer": LayerQuantization(WEIGHT_BITS, "uniform")}, activation_bits=INTEGER_ACTIVATION_BITS)
    return plan.layers["layer"].quantizer


def census(graph: onnx.ModelProto, quantized_layers: list[str]) -> dict[str, Any]:
    """How many quantized layers onnxruntime runs on integer kernels (`search.kernel_census`), how
    many the export wrote as int8 levels, and why it left the others weight-only (a layer no
    output depends on is in none of them)."""
    record = IntegerRecord.of(graph)
    kernels = kernel_census(graph, quantized_layers)
    return {
        "integer_kernels": sum(kernels[layer].variant == INT8 for layer in kernels),
        "quantized_layers": len(quantized_layers),
        "written_as_int8": len(record.integer),
        "weight_only": dict(Counter(record.weight_only.values())),
    }


def measure(families: list[str], sizes: list[str]) -> list[dict[str, Any]]:
    cases = [model_case(family, size) for family in families for size in sizes]
    float_backend = FloatBackend(export_onnx)
    quantizer = integer_plan_quantizer()
    rows, graphs = [], []
    for index, case in enumerate(cases):
        print(f"[{index + 1}/{len(cases)}] exporting {case.name}", flush=True)
        fp32 = float_backend.prepare(case)
        bundle = integer_bundle(case, quantizer)
        full_range = integer_bundle(case, "uniform", largest_level=FULL_RANGE_LEVEL)
        family, size = case.name.split("-")
        rows.append({
            "family": family, "size": size, "model": SIZES[family][size], "weights": quantizer,
            **census(bundle.graph, list(bundle.quantized)),
            "in_run": agreement(bundle), "full_range_signed_weights": agreement(full_range),
        })  # fmt: skip
        graphs += [(fp32.graph, fp32.feeds), (bundle.graph, fp32.feeds)]
    print(f"timing {len(graphs)} graphs, {TIMING.rounds} interleaved rounds", flush=True)
    timings = time_graphs(graphs, TIMING, lambda done, total: print(f"  {done}/{total}", flush=True))
    speed = reference_ms(timings)
    for row, fp32, int8 in zip(rows, timings[0::2], timings[1::2]):
        row.update({
            "fp32_ms": round(fp32.at_reference(speed), 3), "int8_ms": round(int8.at_reference(speed), 3),
            "speedup": round(fp32.ratio / int8.ratio, 3),
            "noise": round(max(fp32.relative_iqr, fp32.round_spread, int8.relative_iqr, int8.round_spread), 3),
        })  # fmt: skip
    return rows


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue #24's speed target on each convolution and linear family at mid and full size."""
    return {
        f"{row['family']} {row['size']}: int8 >= {TARGET_SPEEDUP:g}x FP32": {"value": row["speedup"], "met": row["speedup"] >= TARGET_SPEEDUP}
        for row in rows
        if row["family"] in TARGET_FAMILIES and row["size"] in TARGET_SIZES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo sizes only (checks the script)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or (QUICK_OUT if args.quick else RESULTS / "bundle_speed.json")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    torch.set_num_threads(1)
    rows = measure(list(SIZES), ["demo"] if args.quick else ["demo", "mid", "full"])
    payload = {
        "machine": host_provenance("onnxruntime-fp32, onnxruntime-int8 (QDQ bundles)"),
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "unit": "milliseconds per second of input, batch 1, one thread, at the run's least loaded reference speed",
        "wall_seconds": round(time.monotonic() - started, 1),
        "pair_saturation": pair_saturation(),
        "rows": rows,
        "targets": targets(rows),
    }
    write_result(out, payload)
    for row in rows:
        print(
            f"{row['family']:>10} {row['size']:>4}: FP32 {row['fp32_ms']:9.3f} ms, int8 {row['int8_ms']:9.3f} ms, "
            f"{row['speedup']:.2f}x; integer kernels {row['integer_kernels']}/{row['quantized_layers']}; "
            f"cosine {row['in_run']['cosine']:.5f} (full-range s8 {row['full_range_signed_weights']['cosine']:.5f})"
        )
    for name, check in payload["targets"].items():
        print(f"{name}: {check['value']:.2f} ({'met' if check['met'] else 'missed'})")


if __name__ == "__main__":
    main()
