"""resemblyzer's GE2E front-end: mel power spectra of 1.6 s partial windows, and the utterance embedding.

Upstream: `resemblyzer/audio.py` (`wav_to_mel_spectrogram`), `voice_encoder.py`
(`compute_partial_slices`, `embed_utterance`) and `hparams.py` of resemblyzer 0.1.4, with
librosa 0.11's `melspectrogram` defaults; checked against them in tests/pretrained. The mel
spectrogram is computed here with torch and numpy, so librosa is not needed at run time:

- STFT: periodic Hann window of 400 samples (25 ms), hop 160 (10 ms), frames centred with zero
  padding (librosa >= 0.10's `pad_mode="constant"`), power 2; no logarithm;
- mel: 40 bands from 0 Hz to 8 kHz on the Slaney mel scale (linear below 1 kHz, logarithmic
  above), each triangle scaled to unit area (Slaney normalisation: 2 / bandwidth in Hz);
- windows: 160 frames every 77 frames (1.3 windows per second) over the waveform zero-padded to
  the last window; a last window covering less than 75% real audio is dropped unless it is the
  only one. The utterance embedding is the L2-normalised mean of the window embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.frontends.ge2e_preprocessing import SAMPLE_RATE, preprocess
from evaluators.frontends.spectrogram import centred_power_spectrogram
from evaluators.frontends.waveform import mono_samples

NUM_MEL_BINS = 40
"""`mel_n_channels`."""

N_FFT = 400
"""FFT size and window: 25 ms at 16 kHz (`mel_window_length`)."""

HOP_LENGTH = 160
"""10 ms at 16 kHz (`mel_window_step`): also the samples per mel frame in the window arithmetic."""

PARTIAL_FRAMES = 160
"""`partials_n_frames`: frames per partial window (1.6 s)."""

PARTIALS_PER_SECOND = 1.3
"""`embed_utterance(rate=1.3)`: windows start this often."""

WINDOW_STEP_FRAMES = int(np.round(SAMPLE_RATE / PARTIALS_PER_SECOND / HOP_LENGTH))
"""Frames between window starts (77), rounded as upstream rounds it."""

MODEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH * PARTIAL_FRAMES / WINDOW_STEP_FRAMES
"""Frames the encoder reads per second of long audio: windows overlap, so each frame is read
`PARTIAL_FRAMES / WINDOW_STEP_FRAMES` (about 2.08) times."""

MIN_COVERAGE = 0.75
"""`embed_utterance(min_coverage=0.75)`: share of real audio the last window needs to be kept."""

SLANEY_HZ_PER_MEL = 200.0 / 3
SLANEY_LOG_START_HZ = 1000.0
SLANEY_LOG_STEP = np.log(6.4) / 27.0
"""Slaney mel scale (librosa `hz_to_mel`, htk=False): linear at 200/3 Hz per mel below 1 kHz,
then logarithmic with 27 mels per factor 6.4 in frequency."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    mel = hz / SLANEY_HZ_PER_MEL
    above = hz >= SLANEY_LOG_START_HZ
    mel[above] = SLANEY_LOG_START_HZ / SLANEY_HZ_PER_MEL + np.log(hz[above] / SLANEY_LOG_START_HZ) / SLANEY_LOG_STEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = SLANEY_HZ_PER_MEL * mel
    log_start_mel = SLANEY_LOG_START_HZ / SLANEY_HZ_PER_MEL
    above = mel >= log_start_mel
    hz[above] = SLANEY_LOG_START_HZ * np.exp(SLANEY_LOG_STEP * (mel[above] - log_start_mel))
    return hz


def mel_filterbank() -> torch.Tensor:
    """librosa's `filters.mel(sr=16000, n_fft=400, n_mels=40)`: `[40, 201]`, float32 as librosa's."""
    bin_frequencies = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    lowest, highest = _hz_to_mel(np.array([0.0, SAMPLE_RATE / 2]))
    edges = _mel_to_hz(np.linspace(lowest, highest, NUM_MEL_BINS + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, bin_frequencies)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= 2.0 / (edges[2:] - edges[:-2])[:, None]  # in float32, as librosa scales its float32 matrix
    return torch.from_numpy(weights)


def mel_spectrogram(waveform: np.ndarray) -> torch.Tensor:
    """Mel power spectrogram (not log) of a preprocessed waveform: float32 `[1 + samples // 160, 40]`."""
    samples = torch.from_numpy(np.asarray(waveform, dtype=np.float32))
    power = centred_power_spectrogram(samples, torch.hann_window(N_FFT), N_FFT, HOP_LENGTH)
    return power @ mel_filterbank().T


def partial_window_starts(num_samples: int) -> list[int]:
    """First mel frame of each partial window of a preprocessed waveform of `num_samples` (at least one)."""
    frames = int(np.ceil((num_samples + 1) / HOP_LENGTH))
    starts = list(range(0, max(1, frames - PARTIAL_FRAMES + WINDOW_STEP_FRAMES + 1), WINDOW_STEP_FRAMES))
    coverage = (num_samples - starts[-1] * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def partial_windows(preprocessed: np.ndarray) -> torch.Tensor:
    """The mel partial windows of a preprocessed waveform: float32 `[windows, 160, 40]`."""
    starts = partial_window_starts(len(preprocessed))
    padded_samples = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
    padded = np.pad(preprocessed, (0, max(0, padded_samples - len(preprocessed))))
    mel = mel_spectrogram(padded)
    return torch.stack([mel[start : start + PARTIAL_FRAMES] for start in starts])


def compute_features(waveform: np.ndarray) -> torch.Tensor:
    """The GE2E encoder's input for one utterance: preprocessing, then its partial windows.

    Args:
        waveform: Mono float samples in [-1, 1] at 16 kHz.

    Returns:
        float32 `[windows, 160, 40]`.
    """
    return partial_windows(preprocess(mono_samples(waveform, 1)))


def utterance_embedding(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """The L2-normalised mean of the window embeddings `model(windows)`: `[embedding_dim]`."""
    return F.normalize(model(windows).mean(dim=0), dim=0)
