"""What a speaker-verification bundle says and checks: its signature, EER interval and agreement checks.

Kept apart from `search.tasks.verification` (config, spec, evaluator) because this half reads
bundles, onnxruntime sessions and evaluation sets, which the search itself never needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import onnxruntime
import torch

from evaluators.data.source_features import EvalSet, load_eval_set
from evaluators.data.sources import CorpusConfig
from evaluators.evaluation import Evaluation
from evaluators.features import KALDI
from evaluators.frontends import get_frontend
from evaluators.metrics import all_pair_trials, bootstrap_eer_interval, equal_error_rate
from evaluators.training import embed_utterances
from evaluators.verification import PreparedVerification
from search.checks import Check
from search.run_config import RunConfig
from search.tasks.base import BOOTSTRAP_REPLICATES, CONFIDENCE, TaskExportError, Signature, recorded_check
from search.tasks.frontend_spec import frontend_spec
from search.tasks.verification_setup import fbank_config
from spaces.bundle import Bundle, FeatureSettings, PartialWindows, verification_signature
from spaces.compress import ModelSpec

MIN_COSINE = 0.999
"""Least cosine between PyTorch's and onnxruntime's embedding of any test utterance."""
MAX_EER_DIFFERENCE = 0.001
"""Largest EER difference (a fraction) between PyTorch's and onnxruntime's embeddings."""

def verification_io(config: RunConfig, spec: ModelSpec, model: torch.nn.Module) -> Signature:
    """Filterbank features in, an embedding of the model's size out (a windowed model's: per window)."""
    with torch.no_grad():
        embedding_dim = int(model(spec.one_second_input()).shape[-1])
    features = feature_settings(config)
    return (features, *verification_signature(spec.num_mel_bins, embedding_dim, windowed=features.windows is not None))


def feature_settings(config: RunConfig) -> FeatureSettings:
    """The bundle's record of the front-end the model reads (the engine's filterbank or a pretrained
    family's, with its windowing when it cuts utterances into windows), with the spec of every step
    from an audio file, read as the main evaluation set's audio was."""
    frontend = config.features.frontend
    source = config.data.eval[0].source
    settings = FeatureSettings(
        num_mel_bins=config.features.num_mel_bins,
        frame_length_ms=config.features.frame_length_ms,
        frame_shift_ms=config.features.frame_shift_ms,
        frontend=frontend_spec(fbank_config(config), isinstance(source, CorpusConfig) and source.vad),
    )
    if frontend == KALDI:
        return settings
    kind = f"{frontend} front-end (evaluators.frontends.{frontend})"
    return replace(settings, kind=kind, windows=get_frontend(frontend).windows)


def eer_interval(evaluation: Evaluation, prepared: PreparedVerification) -> dict[str, float]:
    """Bootstrap interval of the EER on the main evaluation set, from the same trials the EER used."""
    eval_set = prepared.eval_sets[0]
    embeddings = embed_utterances(evaluation.compressed.model, eval_set.features).numpy()
    if eval_set.trials is None:
        scores, labels = all_pair_trials(embeddings, np.asarray(eval_set.labels), prepared.max_trials, prepared.seed)
    else:
        scores, labels = eval_set.trials.scores(embeddings), np.asarray(eval_set.trials.labels)
    eer = equal_error_rate(scores, labels)
    if abs(eer - evaluation.metrics["eer"]) > 1e-9:
        raise TaskExportError(f"EER of the re-scored trials ({eer}) differs from the evaluator's ({evaluation.metrics['eer']})")
    low, high = bootstrap_eer_interval(scores, labels, BOOTSTRAP_REPLICATES, CONFIDENCE, prepared.seed)
    return {
        "eer_low": low,
        "eer_high": high,
        "eer_confidence": CONFIDENCE,
        "scored_trials": float(labels.size),
        "target_trials": float(labels.sum()),
    }


def verification_record(config: RunConfig, prepared: PreparedVerification) -> dict[str, Any]:
    return {"eval_set": prepared.eval_sets[0].name, "max_trials": config.evaluation.max_trials}


def verification_summary(metrics: Mapping[str, float]) -> str:
    return (
        f"EER {100 * metrics['eer']:.2f}% ({100 * metrics['eer_low']:.2f}-{100 * metrics['eer_high']:.2f}%), "
        f"minDCF {metrics['min_dcf']:.3f}"
    )


def verification_checks(
    bundle: Bundle,
    session: onnxruntime.InferenceSession,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None,
) -> list[Check]:
    """Embedding agreement per utterance and EER agreement on the evaluation set.

    A windowed model's utterance embeddings are pooled from its window embeddings on both sides:
    by `embed_utterances` in PyTorch, as config.json's `features.windows` says for onnxruntime.
    """
    eval_set = _eval_set(bundle, config, progress)
    (input_name,) = [spec.name for spec in bundle.config.inputs]
    windows = bundle.config.features.windows
    reference = embed_utterances(bundle.model, eval_set.features).numpy()
    exported = np.stack([_onnx_embedding(session, input_name, features, windows) for features in eval_set.features])
    cosines = _cosines(reference, exported)
    worst = int(np.argmin(cosines))
    pooled = f" (pooled from {sum(len(features) for features in eval_set.features)} windows)" if windows else ""
    cosine_check = Check(
        f"embedding cosine >= {MIN_COSINE} on every utterance",
        bool(cosines.min() >= MIN_COSINE),
        f"{len(cosines)} utterances of {eval_set.name!r}{pooled}; lowest {cosines.min():.6f} (utterance {worst}), "
        f"median {np.median(cosines):.6f}",
    )
    max_trials = config.evaluation.max_trials
    reference_eer = eval_set.metrics(reference, max_trials, config.seed).eer
    exported_eer = eval_set.metrics(exported, max_trials, config.seed).eer
    difference = abs(reference_eer - exported_eer)
    eer_check = Check(
        f"EER within {100 * MAX_EER_DIFFERENCE:.1f} percentage points",
        difference <= MAX_EER_DIFFERENCE,
        f"PyTorch {100 * reference_eer:.3f}%, onnxruntime {100 * exported_eer:.3f}% (difference {100 * difference:.3f} points)",
    )
    return [cosine_check, eer_check, recorded_check("EER", reference_eer, bundle.config.metrics, "eer", 100, "%")]


def _onnx_embedding(
    session: onnxruntime.InferenceSession, input_name: str, features: torch.Tensor, windows: PartialWindows | None
) -> np.ndarray:
    """One utterance's embedding from onnxruntime, computed as the bundle says: the utterance as a
    batch of one, or its windows `[windows, frames, bins]` as the batch, their embeddings pooled."""
    if windows is None:
        return session.run(None, {input_name: features[None].numpy()})[0][0]
    return windows.utterance_embedding(session.run(None, {input_name: features.numpy()})[0])


def _eval_set(bundle: Bundle, config: RunConfig, progress: Callable[[str, int, int], None] | None) -> EvalSet:
    """The evaluation set named in the bundle (the config's first one when it has no such set)."""
    wanted = bundle.config.evaluation.get("eval_set")
    chosen = next((item for item in config.data.eval if item.name == wanted), config.data.eval[0])
    report = (lambda done, total: progress(f"{chosen.name} features", done, total)) if progress else None
    return load_eval_set(chosen, fbank_config(config), config.cache_dir, config.evaluation.max_trials, config.seed, report)


def _cosines(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `first` with the same row of `second`."""
    first, second = first.astype(np.float64), second.astype(np.float64)
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.einsum("ij,ij->i", first, second) / np.where(norms > 0, norms, 1.0)
