"""Centred short-time power spectra, the first step of the SpeechBrain and GE2E front-ends.

Both upstreams (SpeechBrain's `STFT`, librosa's `stft` under resemblyzer) centre frame t on
sample t * hop by padding `n_fft // 2` zeros at each end, so an utterance of n samples gives
1 + n // hop frames; they differ only in the window.
"""

from __future__ import annotations

import torch


def centred_power_spectrogram(waveform: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT|^2 of a 1-D waveform with zero-padded centred frames: `[1 + n // hop, n_fft // 2 + 1]`.

    Args:
        waveform: float32 samples.
        window: Analysis window of `n_fft` samples.
        n_fft: FFT size (and window length).
        hop: Samples between frame centres.
    """
    stft = torch.stft(
        waveform, n_fft, hop, n_fft, window, center=True, pad_mode="constant", onesided=True, return_complex=True
    )
    return torch.view_as_real(stft).pow(2).sum(-1).T
