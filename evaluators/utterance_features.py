"""One utterance's model input, from the front-end the run's filterbank settings name.

The engine's own models read Kaldi-compatible filterbanks (`evaluators.features.compute_fbank`);
a pretrained model reads what its upstream computed (`evaluators.frontends`). Every feature cache
goes through here, keyed by the `FbankConfig` that names the front-end.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluators.features import KALDI, FbankConfig, compute_fbank
from evaluators.frontends import FRONTENDS, get_frontend


def utterance_features(samples: np.ndarray, fbank: FbankConfig) -> torch.Tensor:
    """`[frames, bins]` features of mono samples in [-1, 1] (or a windowed front-end's `[windows, frames, bins]`)."""
    if fbank.frontend == KALDI:
        return compute_fbank(samples, fbank)
    return get_frontend(fbank.frontend).features(samples)


def windowed_features(fbank: FbankConfig) -> bool:
    """Whether the front-end gives fixed partial windows (no random crops: no training on them yet)."""
    return fbank.frontend != KALDI and get_frontend(fbank.frontend).windowed


FRONTEND_NAMES = (KALDI, *FRONTENDS)
"""Every `features.frontend` value."""

__all__ = ["FRONTEND_NAMES", "utterance_features", "windowed_features"]
