"""Cost-model predictions for the ready configs' models on every target, FP32 and 8-bit.

For each model below (a ready config, or one with its full-size `model:` block from the
config's comment), the cost model prices the FP32 model and the config's uniform 8-bit
baseline (every bits knob at 8, as `search hwcost show CONFIG --candidate` does) on every
profile of `hwcost/targets/`: latency and peak memory per second of audio, and the packed
size. Costs depend on shapes and bit widths only, so the models keep their initial weights and
nothing is trained; it takes about a minute. Writes `results/benchmarks/cost_predictions.json`.

    .venv/bin/python benchmarks/cost_predictions.py [--out results/benchmarks/cost_predictions.json]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwcost import CostEstimate, available_targets  # noqa: E402
from search.config import load_config  # noqa: E402
from search.cost_report import estimate_candidate  # noqa: E402
from search.space_report import build_space  # noqa: E402
from render_docs import RESULTS, write_result  # noqa: E402

FULL_SIZE_MEL_BINS = 80


@dataclass(frozen=True)
class Model:
    """A ready config, with config overrides (dotted keys) for its full-size variant."""

    label: str
    config: str
    overrides: dict[str, Any] = field(default_factory=dict)


MODELS = (
    Model("demo ResNet", "configs/demo.yaml"),
    Model(
        "ResNet34",
        "configs/sv_resnet.yaml",
        {
            "model": {"family": "resnet", "base_width": 32, "blocks": [3, 4, 6, 3], "embedding_dim": 256},
            "features.num_mel_bins": FULL_SIZE_MEL_BINS,
        },
    ),
    Model(
        "ECAPA-TDNN C=512",
        "configs/sv_ecapa.yaml",
        {
            "model": {
                "family": "ecapa_tdnn", "channels": 512, "scale": 8, "se_channels": 128, "attention_channels": 128,
                "mfa_channels": 1536, "embedding_dim": 192,
            },
            "features.num_mel_bins": FULL_SIZE_MEL_BINS,
        },
    ),
    Model(
        "x-vector 512/1500",
        "configs/sv_xvector.yaml",
        {
            "model": {"family": "xvector", "channels": 512, "pooling_channels": 1500, "embedding_dim": 512},
            "features.num_mel_bins": FULL_SIZE_MEL_BINS,
        },
    ),
    Model("extractor (extraction.yaml)", "configs/extraction.yaml"),
)
"""The full-size blocks are the ones the configs' comments give."""


def costs(estimate: CostEstimate) -> dict[str, float]:
    return {
        "latency_ms": estimate.latency_ms,
        "peak_memory_bytes": estimate.peak_memory_bytes,
        "storage_bytes": estimate.storage_bytes,
    }


def predict(model: Model) -> dict[str, Any]:
    """FP32 and 8-bit costs of one model on every target."""
    config = load_config(ROOT / model.config, model.overrides)
    int8 = build_space(config).uniform_candidate(8)
    targets = {}
    for target in available_targets():
        fp32 = estimate_candidate(config, {}, target)
        targets[target] = {"fp32": costs(fp32), "int8": costs(estimate_candidate(config, int8, target))}
        print(f"{model.label} on {target}: {targets[target]['fp32']['latency_ms']:.2f} ms FP32", flush=True)
    return {
        "label": model.label,
        "config": model.config,
        "overrides": model.overrides,
        "int8_candidate": int8,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "cost_predictions.json")
    args = parser.parse_args(argv)
    payload = {
        "unit": "per second of audio, one core (latency_ms, peak_memory_bytes); packed file (storage_bytes)",
        "models": [predict(model) for model in MODELS],
    }
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
