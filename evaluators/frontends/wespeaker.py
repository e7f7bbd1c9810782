"""WeSpeaker's front-end: Kaldi fbank with a Hamming window, then per-utterance mean normalisation.

Upstream (wenet-e2e/wespeaker at `spaces.models.wespeaker_resnet.WESPEAKER_COMMIT`):
`wespeaker/cli/speaker.py` `compute_features` and `wespeaker/bin/infer_onnx.py` `compute_fbank`
call `torchaudio.compliance.kaldi.fbank` on the waveform scaled by 1 << 15 with 80 bins, 25 ms
frames, a 10 ms shift, `window_type="hamming"`, no dither, then subtract the mean over frames
(CMN without variance normalisation). kaldi-native-fbank computes the same Kaldi fbank (pre-
emphasis 0.97, DC removal, FFT padded to 512, 20 Hz to Nyquist, log floored at float epsilon)
without torchaudio.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import torch

from evaluators.features import mean_normalize
from evaluators.frontends.waveform import mono_samples

SAMPLE_RATE = 16000
"""Sample rate of WeSpeaker's published models (`resample_rate`)."""

NUM_MEL_BINS = 80
"""Mel bins of WeSpeaker's published ResNet and ECAPA-TDNN models."""

FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
"""Kaldi frame length and shift (upstream `frame_length=25, frame_shift=10`)."""

WINDOW_TYPE = "hamming"
"""Upstream's window (Kaldi's default is "povey")."""

INT16_SCALE = 32768.0
"""Upstream multiplies float audio by 1 << 15: Kaldi's features assume int16-range samples."""

DITHER = 0.0
"""No dither at evaluation (torchaudio's default, and upstream's `dither=0.0`)."""

FRAME_LENGTH_SAMPLES = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)
"""The shortest waveform that gives a frame (Kaldi snips the edges: no partial frames)."""


def fbank_options() -> knf.FbankOptions:
    """kaldi-native-fbank settings equal to upstream's torchaudio call."""
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.frame_opts.frame_length_ms = FRAME_LENGTH_MS
    options.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
    options.frame_opts.dither = DITHER
    options.frame_opts.window_type = WINDOW_TYPE
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = NUM_MEL_BINS
    options.use_energy = False
    return options


def compute_features(waveform: np.ndarray) -> torch.Tensor:
    """Mean-normalised log-mel fbank of one utterance.

    Args:
        waveform: Mono float samples in [-1, 1] at 16 kHz.

    Returns:
        float32 `[frames, 80]`, frames = 1 + (samples - 400) // 160.

    Raises:
        ValueError: Not 1-D, or shorter than one 25 ms frame.
    """
    samples = mono_samples(waveform, FRAME_LENGTH_SAMPLES)
    extractor = knf.OnlineFbank(fbank_options())
    extractor.accept_waveform(SAMPLE_RATE, (samples * INT16_SCALE).tolist())
    extractor.input_finished()
    frames = np.stack([extractor.get_frame(index) for index in range(extractor.num_frames_ready)])
    return mean_normalize(torch.from_numpy(frames.astype(np.float32, copy=False)))
