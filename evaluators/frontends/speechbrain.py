"""SpeechBrain's front-end: its `Fbank` (80 bands) then sentence mean normalisation.

Upstream (speechbrain 1.1.2, checked value for value in tests/pretrained): `lobes/features.py`
`Fbank` = `processing/features.py` `STFT` (periodic Hamming window of 25 ms, 10 ms hop, centred
frames, zero padding), `spectral_magnitude` (power), `Filterbank` (HTK mel scale; each band a
triangle centred on its mel point, symmetric, its half-width the distance to the band below;
10 * log10 floored at 1e-10, then clipped to 80 dB under the utterance's maximum), then
`InputNormalization(norm_type="sentence", std_norm=False)`, as the VoxCeleb ECAPA recipes and
the published spkrec-ecapa-voxceleb model configure it: the mean over frames is subtracted and
nothing is divided (with its default `std_norm=True` it would also divide by the std over frames).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from evaluators.features import mean_normalize
from evaluators.frontends.spectrogram import centred_power_spectrogram
from evaluators.frontends.waveform import mono_samples

SAMPLE_RATE = 16000
"""Sample rate of SpeechBrain's published speaker models."""

NUM_MEL_BINS = 80
"""`n_mels` of the ECAPA-TDNN recipes (Fbank's own default is 40)."""

N_FFT = 400
"""FFT size and window length: 25 ms at 16 kHz (`n_fft`, `win_length=25`)."""

HOP_LENGTH = 160
"""10 ms at 16 kHz (`hop_length=10`)."""

MIN_FREQUENCY_HZ = 0.0
MAX_FREQUENCY_HZ = SAMPLE_RATE / 2
"""Band edges (`f_min=0`, `f_max=sample_rate // 2`)."""

LOG_FLOOR = 1e-10
"""`amin`: band energies are floored here before the logarithm (the reference power is 1.0: no offset)."""

DYNAMIC_RANGE_DB = 80.0
"""`top_db`: values more than this below the utterance's maximum are raised to that level."""

POWER_TO_DB = 10.0
"""dB per decade of a power spectrum (Filterbank's `multiplier` for `power_spectrogram=2`)."""

HTK_MEL_FACTOR = 2595.0
HTK_MEL_BREAK_HZ = 700.0
"""HTK mel scale: mel = 2595 * log10(1 + f / 700) (Filterbank `_to_mel`)."""


def _to_mel(hz: float) -> float:
    return HTK_MEL_FACTOR * math.log10(1.0 + hz / HTK_MEL_BREAK_HZ)


def filterbank_matrix() -> torch.Tensor:
    """SpeechBrain's triangular mel filters, `[N_FFT // 2 + 1, NUM_MEL_BINS]` (power bins -> bands).

    Computed in float32 as upstream does, so the weights are upstream's to the last bit.
    """
    mel = torch.linspace(_to_mel(MIN_FREQUENCY_HZ), _to_mel(MAX_FREQUENCY_HZ), NUM_MEL_BINS + 2)
    hz = HTK_MEL_BREAK_HZ * (10 ** (mel / HTK_MEL_FACTOR) - 1)
    centres, half_widths = hz[1:-1], (hz[1:] - hz[:-1])[:-1]
    frequencies = torch.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    slopes = (frequencies[:, None] - centres[None, :]) / half_widths[None, :]
    return torch.clamp(1.0 - slopes.abs(), min=0.0)


def compute_features(waveform: np.ndarray) -> torch.Tensor:
    """Sentence-mean-normalised log-mel filterbank of one utterance.

    Args:
        waveform: Mono float samples in [-1, 1] at 16 kHz.

    Returns:
        float32 `[frames, 80]`, frames = 1 + samples // 160.
    """
    samples = torch.from_numpy(mono_samples(waveform, 1))
    power = centred_power_spectrogram(samples, torch.hamming_window(N_FFT), N_FFT, HOP_LENGTH)
    decibels = POWER_TO_DB * torch.log10(torch.clamp(power @ filterbank_matrix(), min=LOG_FLOOR))
    decibels = torch.maximum(decibels, decibels.max() - DYNAMIC_RANGE_DB)
    return mean_normalize(decibels)
