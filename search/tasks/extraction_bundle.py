"""What a speaker-extraction bundle says and checks: its signature, SI-SDRi interval, agreement check and card.

Kept apart from `search.tasks.extraction` (config, spec, evaluator) because this half reads
bundles, onnxruntime sessions and test mixtures, which the search itself never needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime
import torch

from evaluators.data.mixture_corpora import evaluation_mixtures
from evaluators.data.mixtures import Mixture
from evaluators.evaluation import Evaluation
from evaluators.extraction import PreparedExtraction
from evaluators.extraction_training import extract
from evaluators.si_sdr import si_sdr_improvement
from search.checks import Check
from search.model_card import TaskCard, quality_table, usage_blocks
from search.run_config import RunConfig
from search.tasks.base import BOOTSTRAP_REPLICATES, CONFIDENCE, TaskExportError, Signature, recorded_check
from spaces.bundle import Bundle, BundleConfig, extraction_signature
from spaces.compress import ModelSpec

MAX_SI_SDRI_DIFFERENCE = 0.1
"""Largest mean SI-SDRi difference (dB) between PyTorch's and onnxruntime's estimates."""


def extraction_io(config: RunConfig, spec: ModelSpec, model: torch.nn.Module) -> Signature:
    """Raw mixture and enrollment audio in, the estimate out: no front end."""
    return (None, *extraction_signature())


def si_sdri_per_mixture(estimates: Sequence[torch.Tensor], mixtures: Sequence[Mixture]) -> np.ndarray:
    """SI-SDRi (dB) of each estimate against its mixture's target, as `extraction_metrics` averages them."""
    return np.array([
        si_sdr_improvement(estimate, torch.from_numpy(example.mixture), torch.from_numpy(example.target)).item()
        for example, estimate in zip(mixtures, estimates)
    ])


def si_sdri_interval(evaluation: Evaluation, prepared: PreparedExtraction) -> dict[str, float]:
    """Bootstrap interval of the mean SI-SDRi over the test mixtures, from the mixtures the evaluator used."""
    with torch.no_grad():
        improvements = si_sdri_per_mixture(extract(evaluation.compressed.model, prepared.test_set), prepared.test_set)
    if abs(improvements.mean() - evaluation.metrics["si_sdri"]) > 1e-6:
        raise TaskExportError(
            f"SI-SDRi of the re-scored mixtures ({improvements.mean()}) differs from the evaluator's "
            f"({evaluation.metrics['si_sdri']})"
        )
    generator = np.random.default_rng(prepared.seed)
    means = improvements[generator.integers(0, improvements.size, (BOOTSTRAP_REPLICATES, improvements.size))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return {
        "si_sdri_low": float(low),
        "si_sdri_high": float(high),
        "si_sdri_confidence": CONFIDENCE,
        "test_mixtures": float(improvements.size),
    }


def extraction_record(config: RunConfig, prepared: PreparedExtraction) -> dict[str, Any]:
    return {"mixtures": config.to_dict()["mixtures"], "test_mixtures": len(prepared.test_set)}


def extraction_summary(metrics: Mapping[str, float]) -> str:
    return (
        f"SI-SDRi {metrics['si_sdri']:.2f} dB ({metrics['si_sdri_low']:.2f} to {metrics['si_sdri_high']:.2f}), "
        f"SDRi {metrics['sdri']:.2f} dB"
    )


def extraction_checks(
    bundle: Bundle,
    session: onnxruntime.InferenceSession,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None,
) -> list[Check]:
    """Mean SI-SDRi agreement on the run's test mixtures, with the largest sample difference."""
    if progress:
        progress("test mixtures", 0, 1)
    mixtures = evaluation_mixtures(config.mixtures, config.data.eval[0].source, config.data.sample_rate, config.cache_dir)
    if progress:
        progress("test mixtures", 1, 1)
    mixture_input, enrollment_input = [spec.name for spec in bundle.config.inputs]
    with torch.no_grad():
        reference = [estimate.numpy() for estimate in extract(bundle.model, mixtures)]
    exported = [
        session.run(None, {mixture_input: example.mixture[None], enrollment_input: example.enrollment[None]})[0][0]
        for example in mixtures
    ]
    largest = max(float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else np.inf
                  for ours, theirs in zip(reference, exported))  # fmt: skip
    if not np.isfinite(largest):
        return [Check(f"SI-SDRi within {MAX_SI_SDRI_DIFFERENCE} dB", False, "onnxruntime's estimates have other lengths")]
    reference_si_sdri, exported_si_sdri = (
        si_sdri_per_mixture([torch.from_numpy(estimate) for estimate in estimates], mixtures)
        for estimates in (reference, exported)
    )
    difference = abs(reference_si_sdri.mean() - exported_si_sdri.mean())
    worst = np.abs(reference_si_sdri - exported_si_sdri).max()
    recorded = recorded_check("SI-SDRi", float(reference_si_sdri.mean()), bundle.config.metrics, "si_sdri", 1, " dB")
    return [Check(
        f"SI-SDRi within {MAX_SI_SDRI_DIFFERENCE} dB",
        bool(difference <= MAX_SI_SDRI_DIFFERENCE),
        f"{len(mixtures)} test mixtures; PyTorch {reference_si_sdri.mean():.3f} dB, onnxruntime {exported_si_sdri.mean():.3f} dB "
        f"(difference {difference:.4f} dB, at most {worst:.4f} dB on one mixture); estimates differ by at most {largest:.2e}",
    ), recorded]  # fmt: skip


def _extraction_quality(config: BundleConfig) -> str:
    metrics, evaluation = config.metrics, config.evaluation
    reference = evaluation.get("reference", {})
    rows = [
        f"| SI-SDRi | {metrics['si_sdri']:.2f} dB | {metrics['si_sdri_low']:.2f} to {metrics['si_sdri_high']:.2f} dB "
        f"| {reference.get('si_sdri', float('nan')):.2f} dB |",
        f"| SDRi | {metrics['sdri']:.2f} dB | not estimated | {reference.get('sdri', float('nan')):.2f} dB |",
    ]
    note = (
        f"Mean improvement over the unprocessed mixture on {int(metrics['test_mixtures']):,} test mixtures "
        f"(seed {evaluation.get('seed')}); SDRi is the plain, scale-dependent SDR (no BSS-eval distortion "
        f"filter). The interval is a percentile bootstrap over mixtures ({evaluation.get('bootstrap_replicates')} "
        "replicates); it covers the choice of mixtures only, not a change of speakers or recording conditions."
    )
    return quality_table(metrics["si_sdri_confidence"], rows, note)


def _audio_inputs(config: BundleConfig) -> str:
    mixtures = config.evaluation.get("mixtures", {})
    return (
        f"Inputs: raw {config.sample_rate} Hz mono audio in [-1, 1], no front end. Mixtures: "
        f"`{json.dumps(mixtures)}`."
    )


def _extraction_usage(config: BundleConfig) -> list[str]:
    mixture, enrollment = [spec.name for spec in config.inputs]
    (output,) = [spec.name for spec in config.outputs]
    return usage_blocks(
        [],
        [
            f"# {mixture}, {enrollment}: float32 tensors [1, samples] at {config.sample_rate} Hz in [-1, 1], any lengths",
            f"{output} = bundle.model({mixture}, {enrollment})  # [1, samples of the {mixture}]",
        ],
        f'({output},) = session.run(None, {{"{mixture}": {mixture}.numpy(), "{enrollment}": {enrollment}.numpy()}}',
    )


EXTRACTION_CARD = TaskCard(
    headline=lambda config: f"SI-SDRi {config.metrics['si_sdri']:.2f} dB on the test mixtures",
    use="The estimate is the voice of the enrollment's speaker taken out of the mixture (as long as the "
    "mixture); the enrollment is another utterance of that speaker.",
    quality=_extraction_quality,
    inputs=_audio_inputs,
    usage=_extraction_usage,
)
