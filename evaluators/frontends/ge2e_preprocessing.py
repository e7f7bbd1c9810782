"""resemblyzer's waveform preprocessing: raise quiet audio to -30 dBFS, then shorten long silences.

Upstream: `resemblyzer/audio.py` (`preprocess_wav`, `normalize_volume`, `trim_long_silences`)
and `hparams.py` of resemblyzer 0.1.4, checked against it in tests/pretrained. The arithmetic
is upstream's, in float32 as upstream's is for float32 audio, because the VAD decides on int16
samples and a sample rounded the other way can move a speech boundary.

Silence trimming: webrtcvad (mode 3, the most aggressive) labels 30 ms windows; the labels are
smoothed by a moving average over 8 windows and rounded; voiced regions are widened by 3
windows on each side (a dilation of 7 = 6 silent windows + 1); unvoiced windows are dropped.
The waveform is first cut to a whole number of windows.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

SAMPLE_RATE = 16000
"""`sampling_rate`: the VAD and the encoder run at 16 kHz."""

TARGET_DBFS = -30
"""`audio_norm_target_dBFS`: quieter audio is raised to this RMS level; louder audio is kept."""

INT16_MAX = 2**15 - 1
"""`int16_max`: full scale of the int16 samples the RMS level and the VAD are computed on."""

VAD_WINDOW_MS = 30
"""`vad_window_length`: webrtcvad accepts 10, 20 or 30 ms windows."""

VAD_WINDOW_SAMPLES = VAD_WINDOW_MS * SAMPLE_RATE // 1000
"""Samples per VAD window (480)."""

VAD_MODE = 3
"""webrtcvad aggressiveness, 0-3: 3 calls the fewest windows speech."""

VAD_MOVING_AVERAGE_WIDTH = 8
"""`vad_moving_average_width`: windows averaged to smooth the speech labels."""

VAD_MAX_SILENCE_WINDOWS = 6
"""`vad_max_silence_length`: the dilation structure is this many windows plus one."""


def normalize_volume(waveform: np.ndarray) -> np.ndarray:
    """Scale `waveform` to `TARGET_DBFS` RMS if it is quieter (upstream `increase_only=True`)."""
    rms = np.sqrt(np.mean((waveform * INT16_MAX) ** 2))
    change_db = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    if change_db < 0:
        return waveform
    return waveform * (10 ** (change_db / 20))


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Mean of `width` values around each one, zeros beyond the ends (upstream's centring)."""
    padded = np.concatenate((np.zeros((width - 1) // 2), values, np.zeros(width // 2)))
    sums = np.cumsum(padded, dtype=float)
    sums[width:] = sums[width:] - sums[:-width]
    return sums[width - 1 :] / width


def voiced_windows(waveform: np.ndarray) -> np.ndarray:
    """webrtcvad's speech label of each whole `VAD_WINDOW_MS` window of `waveform` (bool array)."""
    import webrtcvad  # the webrtcvad-wheels package; only GE2E's front-end needs it

    whole_windows = len(waveform) - len(waveform) % VAD_WINDOW_SAMPLES
    pcm = np.round(waveform[:whole_windows] * INT16_MAX).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(VAD_MODE)
    window_bytes = 2 * VAD_WINDOW_SAMPLES  # int16 samples
    starts = range(0, len(pcm), window_bytes)
    return np.array([vad.is_speech(pcm[start : start + window_bytes], SAMPLE_RATE) for start in starts], dtype=bool)


def trim_long_silences(waveform: np.ndarray) -> np.ndarray:
    """`waveform` cut to whole VAD windows, without the windows far from any speech."""
    waveform = waveform[: len(waveform) - len(waveform) % VAD_WINDOW_SAMPLES]
    smoothed = np.round(_moving_average(voiced_windows(waveform), VAD_MOVING_AVERAGE_WIDTH)).astype(bool)
    kept = binary_dilation(smoothed, np.ones(VAD_MAX_SILENCE_WINDOWS + 1))
    return waveform[np.repeat(kept, VAD_WINDOW_SAMPLES)]


def preprocess(waveform: np.ndarray) -> np.ndarray:
    """resemblyzer's `preprocess_wav` for 16 kHz float32 audio: volume normalisation, then silence trimming.

    `waveform` must be float32 (what `librosa.load` gives upstream): the arithmetic stays float32.
    """
    return trim_long_silences(normalize_volume(waveform))
