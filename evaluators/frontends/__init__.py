"""Front-ends of pretrained model families: waveform -> model input, model outputs -> one embedding.

A pretrained model only works on the features it was trained on, so each upstream's pipeline is
reproduced with its own constants, one module per upstream: `wespeaker` (Kaldi fbank, Hamming
window), `speechbrain` (SpeechBrain's Fbank with sentence mean normalisation) and `ge2e`
(resemblyzer's preprocessing, mel windows and window averaging). Every front-end takes mono
float32 samples in [-1, 1] at its `sample_rate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evaluators.frontends import ge2e, speechbrain, wespeaker
from spaces.bundle import L2_NORMALISED_MEAN, PartialWindows


def whole_utterance_embedding(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The embedding of one utterance's `[frames, bins]` features as one batch item: `[embedding_dim]`."""
    return model(features.unsqueeze(0))[0]


@dataclass(frozen=True)
class Frontend:
    """One upstream's input pipeline.

    Attributes:
        name: Registry key.
        sample_rate: Rate of the waveforms `features` takes.
        num_mel_bins: Bands per frame of the features.
        features: Waveform -> the model's input for one utterance (`[frames, bins]`, or GE2E's
            `[windows, frames, bins]`).
        embed: (model, features) -> the utterance embedding `[embedding_dim]`; call it in
            eval mode under `torch.no_grad()`.
        windows: How the features cut an utterance into partial windows `[windows, frames, bins]`
            and pool the window embeddings, or None for a frame sequence. Fine-tuning and
            sensitivities crop single windows, a teacher cannot be trained on them, and a
            bundle records it for deployers.
        frames_per_second: Frames the model reads per second of audio: the hop rate, or more
            where windows overlap (GE2E's: each frame about 160/77 times). The cost model
            prices this many.
    """

    name: str
    sample_rate: int
    num_mel_bins: int
    features: Callable[[np.ndarray], torch.Tensor]
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    windows: PartialWindows | None = None
    frames_per_second: float = 100.0

    @property
    def windowed(self) -> bool:
        return self.windows is not None


FRONTENDS: dict[str, Frontend] = {
    "wespeaker": Frontend(
        "wespeaker", wespeaker.SAMPLE_RATE, wespeaker.NUM_MEL_BINS, wespeaker.compute_features,
        whole_utterance_embedding,
    ),
    "speechbrain": Frontend(
        "speechbrain", speechbrain.SAMPLE_RATE, speechbrain.NUM_MEL_BINS, speechbrain.compute_features,
        whole_utterance_embedding,
    ),
    "ge2e": Frontend(
        "ge2e", ge2e.SAMPLE_RATE, ge2e.NUM_MEL_BINS, ge2e.compute_features, ge2e.utterance_embedding,
        windows=PartialWindows("ge2e", ge2e.PARTIAL_FRAMES, ge2e.WINDOW_STEP_FRAMES, ge2e.MIN_COVERAGE, L2_NORMALISED_MEAN),
        frames_per_second=ge2e.MODEL_FRAMES_PER_SECOND,
    ),
}
"""Front-end name -> front-end; the name is the upstream whose models read these features."""


def get_frontend(name: str) -> Frontend:
    """The registered front-end `name`; an unknown name is a clear error."""
    if name not in FRONTENDS:
        raise ValueError(f"frontend={name!r}: unknown front-end; available: {sorted(FRONTENDS)}")
    return FRONTENDS[name]


__all__ = ["FRONTENDS", "Frontend", "get_frontend", "whole_utterance_embedding"]
