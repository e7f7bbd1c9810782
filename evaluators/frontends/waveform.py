"""The waveform every front-end takes: mono float32 samples in [-1, 1], checked once."""

from __future__ import annotations

import numpy as np


def mono_samples(waveform: np.ndarray, minimum_samples: int) -> np.ndarray:
    """`waveform` as a 1-D float32 array.

    Raises:
        ValueError: Not 1-D, or shorter than `minimum_samples` (the shortest input with a frame).
    """
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio has shape {samples.shape}: expected mono 1-D samples")
    if len(samples) < minimum_samples:
        raise ValueError(f"audio has {len(samples)} samples: need at least {minimum_samples}")
    return samples
