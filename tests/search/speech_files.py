"""Audio files of synthetic speech for the runner and CLI tests, in the formats deployers meet.

Three utterances of the synthetic corpus's test speakers (two of one speaker, one of another),
written as 16 kHz 16-bit mono, 44.1 kHz 16-bit stereo (read back through soxr) and 16 kHz float
mono, so reading, channel averaging and resampling are all exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from evaluators.data.synthetic import SyntheticCorpusConfig, generate_speaker_utterances

_CORPUS = SyntheticCorpusConfig(train_speakers=2, test_speakers=2, utterances_per_speaker=2, min_seconds=1.5, max_seconds=2.5, seed=11)


def write_speech_files(folder: Path) -> list[Path]:
    """a.wav and b.wav (one speaker), c.wav (another), in `folder`."""
    first, second = generate_speaker_utterances(_CORPUS, "test", 0)
    (other, _) = generate_speaker_utterances(_CORPUS, "test", 1)
    rate = _CORPUS.sample_rate
    stereo = soxr.resample(np.stack([second.audio, 0.5 * second.audio], axis=1), rate, 44100)
    files = [
        ("a.wav", first.audio, rate, "PCM_16"),
        ("b.wav", stereo, 44100, "PCM_16"),
        ("c.wav", other.audio, rate, "FLOAT"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for name, samples, sample_rate, subtype in files:
        soundfile.write(folder / name, np.clip(samples, -1.0, 1.0), sample_rate, subtype=subtype)
    return [folder / name for name, *_ in files]
