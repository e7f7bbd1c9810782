"""One utterance's model input, from the front-end the run's filterbank settings name.

The engine's own models read Kaldi-compatible filterbanks (`evaluators.features.compute_fbank`);
a pretrained model reads what its upstream computed (`evaluators.frontends`). Every feature cache
goes through here, keyed by the `FbankConfig` that names the front-end.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluators.features import KALDI, FbankConfig, FeatureSet, compute_fbank
from evaluators.frontends import FRONTENDS, get_frontend


def utterance_features(samples: np.ndarray, fbank: FbankConfig) -> torch.Tensor:
    """`[frames, bins]` features of mono samples in [-1, 1] (or a windowed front-end's `[windows, frames, bins]`)."""
    if fbank.frontend == KALDI:
        return compute_fbank(samples, fbank)
    return get_frontend(fbank.frontend).features(samples)


def windowed_features(fbank: FbankConfig) -> bool:
    """Whether the front-end gives partial windows `[windows, frames, bins]` per utterance."""
    return fbank.frontend != KALDI and get_frontend(fbank.frontend).windowed


def single_windows(utterances: FeatureSet) -> FeatureSet:
    """Each partial window of each utterance as an example of its own (`[frames, bins]`, same speaker).

    The model embeds one window at a time, so fine-tuning crops and sensitivities are taken
    from windows; utterance ids get `#<window>` appended.
    """
    features, labels, speakers, ids = [], [], [], []
    for windows, label, speaker, utterance in zip(
        utterances.features, utterances.labels, utterances.speaker_ids, utterances.utterance_ids
    ):
        for index, window in enumerate(windows):
            features.append(window)
            labels.append(label)
            speakers.append(speaker)
            ids.append(f"{utterance}#{index}")
    return FeatureSet(features, labels, speakers, ids)


FRONTEND_NAMES = (KALDI, *FRONTENDS)
"""Every `features.frontend` value."""

__all__ = ["FRONTEND_NAMES", "single_windows", "utterance_features", "windowed_features"]
