"""Small generated audio files for the corpus, audio and trial-list tests."""

from pathlib import Path

import numpy as np
import pytest
import soundfile


def _tone(seconds: float, rate: int, frequency: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave, float64 samples."""
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)


@pytest.fixture
def write_audio():
    """Writes a tone to a file whose format follows its suffix; stereo files get a quieter right channel."""

    def write(path: Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1, frequency: float = 220.0) -> Path:
        samples = _tone(seconds, rate, frequency)
        data = np.stack([samples, 0.5 * samples], axis=1) if channels == 2 else samples
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, data, rate)
        return path

    return write
