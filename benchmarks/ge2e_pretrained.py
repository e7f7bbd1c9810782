"""The pretrained GE2E encoder through the engine vs resemblyzer's own pipeline, on all of AN4.

Every AN4 utterance (train and test folders: 84 speakers) is embedded twice: by the engine (its
GE2E front-end and model, the weights loaded from the `resemblyzer` wheel by `teacher.checkpoint`)
and by resemblyzer itself (`preprocess_wav` + `VoiceEncoder.embed_utterance`). Both are scored on
the same trials (every pair of utterances, cosine), with a percentile-bootstrap 95% interval of
each EER and a paired bootstrap interval of their difference (the same resampled trials for both).
Also timed: loading a checkpoint of each format into its model (median of repeats).

    .venv/bin/python benchmarks/ge2e_pretrained.py [--an4 ../shared/data/an4] [--out results/benchmarks/ge2e_pretrained.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.data.audio import load_audio  # noqa: E402
from evaluators.frontends import get_frontend  # noqa: E402
from evaluators.metrics import (  # noqa: E402
    all_pair_trials,
    bootstrap_eer_interval,
    equal_error_rate,
    paired_eer_difference_interval,
)
from spaces.checkpoints import load_checkpoint, resolve_checkpoint_path, save_native_checkpoint  # noqa: E402
from spaces.compress import ModelSpec  # noqa: E402
from spaces.models import build_model  # noqa: E402

GE2E_WEIGHTS = "package:resemblyzer/pretrained.pt"
REPLICATES = 500
CONFIDENCE = 0.95


def an4_utterances(root: Path) -> list[tuple[str, Path]]:
    """(speaker, file) of every AN4 recording, train and test folders alike."""
    return sorted((path.parent.name, path) for split in ("train", "test") for path in (root / split).glob("*/*.flac"))


def engine_embeddings(utterances: list[tuple[str, Path]]) -> np.ndarray:
    frontend = get_frontend("ge2e")
    model = build_model("ge2e")
    model.load_state_dict(load_checkpoint(resolve_checkpoint_path(GE2E_WEIGHTS), "resemblyzer", model))
    model.eval()
    with torch.no_grad():
        return np.stack([
            frontend.embed(model, frontend.features(load_audio(path, frontend.sample_rate))).numpy()
            for _, path in utterances
        ])


def resemblyzer_embeddings(utterances: list[tuple[str, Path]]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # resemblyzer imports scipy.ndimage.morphology
        from resemblyzer import VoiceEncoder, preprocess_wav

        encoder = VoiceEncoder("cpu", verbose=False)
        return np.stack([encoder.embed_utterance(preprocess_wav(path)) for _, path in utterances])


def scored(embeddings: np.ndarray, labels: np.ndarray, trials: int) -> tuple[np.ndarray, np.ndarray]:
    return all_pair_trials(embeddings, labels, trials, seed=0)


def load_times(repeats: int = 5) -> dict[str, float]:
    """Median seconds to load each format's checkpoint into its model (a published-size model each)."""
    models = {
        "resemblyzer": ("ge2e", {}, resolve_checkpoint_path(GE2E_WEIGHTS)),
        "wespeaker": ("wespeaker_resnet", {"num_blocks": (3, 4, 6, 3), "m_channels": 32, "embedding_dim": 256}, None),
        "speechbrain": ("speechbrain_ecapa", {"embedding_dim": 192}, None),
        "native": ("ecapa_tdnn", {"num_mel_bins": 80}, None),
    }
    times = {}
    with tempfile.TemporaryDirectory() as folder:
        for format, (family, kwargs, path) in models.items():
            model = build_model(family, **kwargs)
            if path is None:
                path = Path(folder) / f"{format}.pt"
                if format == "native":
                    spec = ModelSpec(family, dict(kwargs), 80, 100, 16000)
                    save_native_checkpoint(path, model.state_dict(), spec)
                else:
                    state = model.state_dict()
                    torch.save({"state_dict": state} if format == "wespeaker" else state, path)
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                load_checkpoint(path, format, model)
                runs.append(time.perf_counter() - start)
            times[format] = {"family": family, "seconds": statistics.median(runs), "megabytes": os.path.getsize(path) / 1e6}
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--an4", default=str(ROOT.parent / "shared" / "data" / "an4"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "ge2e_pretrained.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    utterances = an4_utterances(Path(args.an4))
    speakers = sorted({speaker for speaker, _ in utterances})
    labels = np.array([speakers.index(speaker) for speaker, _ in utterances])
    pairs = len(utterances) * (len(utterances) - 1) // 2
    started = time.perf_counter()
    ours = engine_embeddings(utterances)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs = resemblyzer_embeddings(utterances)
    theirs_seconds = time.perf_counter() - started
    ours_scores, trial_labels = scored(ours, labels, pairs)
    theirs_scores, same_labels = scored(theirs, labels, pairs)
    assert np.array_equal(trial_labels, same_labels)
    cosines = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    pipelines = {}
    for name, scores, seconds in (("engine", ours_scores, ours_seconds), ("resemblyzer", theirs_scores, theirs_seconds)):
        low, high = bootstrap_eer_interval(scores, trial_labels, REPLICATES, CONFIDENCE, 0)
        pipelines[name] = {"eer": equal_error_rate(scores, trial_labels), "eer_low": low, "eer_high": high, "seconds": seconds}
    difference = paired_eer_difference_interval(ours_scores, theirs_scores, trial_labels, REPLICATES, CONFIDENCE, 0)
    result = {
        "speakers": len(speakers),
        "utterances": len(utterances),
        "trials": int(trial_labels.size),
        "target_trials": int(trial_labels.sum()),
        "confidence": CONFIDENCE,
        "bootstrap_replicates": REPLICATES,
        "pipelines": pipelines,
        "eer_difference_interval": {"low": difference[0], "high": difference[1]},
        "embedding_cosine": {"min": float(cosines.min()), "median": float(np.median(cosines))},
        "load_seconds": load_times(),
        "resemblyzer_version": importlib.metadata.version("resemblyzer"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: result[key] for key in ("speakers", "utterances", "trials", "pipelines", "eer_difference_interval", "embedding_cosine")}, indent=2))


if __name__ == "__main__":
    main()
