"""Measured onnxruntime latency of exported bundles beside the cost model's predictions.

For each bundle (`search export` output): `search verify`'s checks, onnxruntime's median time for
one second of audio on one thread of this machine, PyTorch's on the same input and thread count,
and the cost model's latency on every target profile. The host is x86 with AVX2, so `x86-avx2`
is the profile to compare with; onnxruntime has no sub-8-bit or lookup kernels, so it runs such
layers as float convolutions after decoding, while the cost model prices packed kernels.

    .venv/bin/python benchmarks/bundle_latency.py BUNDLE [BUNDLE ...] [--out results/benchmarks/bundle_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwcost import CostModel, available_targets  # noqa: E402
from search.verify import verify_bundle  # noqa: E402
from spaces.bundle import example_inputs, load_bundle  # noqa: E402

TIMING_SECONDS = 3.0


def torch_latency_ms(bundle_path: Path, seconds: float) -> tuple[float, float]:
    """Median and fastest PyTorch time for one second of audio, one thread (as onnxruntime is timed)."""
    bundle = load_bundle(bundle_path)
    inputs = tuple(example_inputs(bundle.config).values())
    torch.set_num_threads(1)
    timings = []
    with torch.inference_mode():
        for _ in range(3):
            bundle.model(*inputs)
        started = time.perf_counter()
        while len(timings) < 20 or time.perf_counter() - started < seconds:
            begin = time.perf_counter()
            bundle.model(*inputs)
            timings.append(1000.0 * (time.perf_counter() - begin))
    return statistics.median(timings), min(timings)


def measure_bundle(path: Path) -> dict:
    report = verify_bundle(path, timing_seconds=TIMING_SECONDS)
    bundle = load_bundle(path)
    cost_model = CostModel()
    torch_median, torch_fastest = torch_latency_ms(path, TIMING_SECONDS)
    return {
        "bundle": str(path),
        "trial": bundle.config.source.get("trial"),
        "size_bytes": bundle.config.size_bytes,
        "layers": {name: f"{layer.bits}-bit {layer.quantizer}" for name, layer in bundle.config.layers.items()},
        "checks": {check.name: {"passed": check.passed, "detail": check.detail} for check in report.checks},
        "onnxruntime_ms": report.latency.measured_ms,
        "onnxruntime_noise": report.latency.noise,
        "onnxruntime_runs": report.latency.runs,
        "runtime": report.latency.runtime,
        "runtime_predicted_ms": report.latency.predicted_ms,
        "pytorch_ms": torch_median,
        "pytorch_fastest_ms": torch_fastest,
        "predicted_ms": {
            target: cost_model.estimate(bundle.compressed.description, target).latency_ms for target in available_targets()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "bundle_latency.json")
    args = parser.parse_args()
    rows = [measure_bundle(path) for path in args.bundles]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "unit": "milliseconds per second of audio, batch 1, one thread (onnxruntime: median CPU time, `search verify`; "
        "PyTorch: median and fastest wall time)",
        "load_average": os.getloadavg()[0],
        "bundles": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['bundle']}: onnxruntime {row['onnxruntime_ms']:.3f} ms (noise {row['onnxruntime_noise']:.0%}), "
            f"PyTorch {row['pytorch_ms']:.3f} ms (fastest {row['pytorch_fastest_ms']:.3f}), "
            f"predicted x86-avx2 {row['predicted_ms']['x86-avx2']:.3f} ms; checks passed: "
            f"{all(check['passed'] for check in row['checks'].values())}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
