"""Speech files as mono float samples at the model's sample rate.

Real corpora mix formats, channel counts and rates; the models here take one rate of mono
audio. Files are read with `soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3...),
channels are averaged, and other rates are resampled with soxr (band-limited, high quality).
An optional energy VAD drops silence, which otherwise dilutes short-utterance embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

AUDIO_SUFFIXES = (".flac", ".mp3", ".ogg", ".opus", ".wav")
"""File name endings the corpus adapters treat as audio (lower case)."""

VAD_FRAME_MS = 20.0
"""Frame length of the energy VAD."""

VAD_DYNAMIC_RANGE_DB = 40.0
"""Frames quieter than the loudest frame by more than this are silence."""

VAD_HANGOVER_MS = 100.0
"""Silence kept on each side of speech, so that soft word onsets and endings survive."""


FULL_SCALE = 0.999
"""Samples at or above this magnitude (of 1.0) are at full scale."""
CLIPPED_FRACTION = 0.5
"""A file with more than this share of its samples at full scale is clipped (or a test tone), not speech."""


class AudioError(ValueError):
    """A speech file that cannot be used.

    Attributes:
        path: The file.
        reason: Short category ("unreadable", "empty", "too short", "wrong sample rate").
        detail: What exactly was wrong.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Segment:
    """Part of a recording, in seconds from its start; `end=None` runs to the end of the file."""

    start: float = 0.0
    end: float | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"segment start={self.start}, end={self.end}: need 0 <= start < end")


@dataclass(frozen=True)
class AudioInfo:
    """What a file header says, read without decoding the samples."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Sample rate, length and channel count of a file.

    Raises:
        AudioError: ("unreadable") if the file is missing or not audio soundfile can decode.
    """
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(path, "unreadable", _one_line(error)) from None
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def load_audio(path: str | os.PathLike[str], sample_rate: int, segment: Segment | None = None) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate`.

    Args:
        path: Any file soundfile reads.
        sample_rate: Rate of the result; other rates are resampled with soxr.
        segment: Only this part of the recording (Kaldi `segments`).

    Raises:
        AudioError: If the file cannot be read or holds no samples (in the segment).
    """
    segment = segment or Segment()
    try:
        with soundfile.SoundFile(str(path)) as file:
            rate = file.samplerate
            start = round(segment.start * rate)
            stop = file.frames if segment.end is None else min(file.frames, round(segment.end * rate))
            file.seek(min(start, file.frames))
            samples = file.read(max(0, stop - start), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(path, "unreadable", _one_line(error)) from None
    if samples.size == 0:
        raise AudioError(path, "empty", "no samples" + (f" in {segment}" if segment != Segment() else ""))
    check_samples(path, samples)
    mono = samples.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32, copy=False)
    return mono


def check_samples(path: str | os.PathLike[str], samples: np.ndarray) -> None:
    """Reject samples no speech recording has: non-finite values, pure digital silence, a clipped file.

    A float WAV can hold NaN or infinity, which would poison the filterbank and every later step;
    an all-zero file has no speaker; a file mostly at full scale is clipping or a test tone.

    Raises:
        AudioError: ("non-finite samples", "silent" or "clipped"), naming how many samples.
    """
    finite = np.isfinite(samples)
    if not finite.all():
        raise AudioError(path, "non-finite samples", f"{int((~finite).sum())} of {samples.size} samples are NaN or infinite")
    magnitude = np.abs(samples)
    if not magnitude.any():
        raise AudioError(path, "silent", f"all {samples.size} samples are zero")
    clipped = int((magnitude >= FULL_SCALE).sum())
    if clipped > CLIPPED_FRACTION * samples.size:
        raise AudioError(path, "clipped", f"{clipped} of {samples.size} samples at full scale")


def energy_vad(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The voiced part of an utterance: frames within `VAD_DYNAMIC_RANGE_DB` of the loudest one.

    Voiced frames are widened by `VAD_HANGOVER_MS` on each side and the kept samples are
    concatenated. A relative threshold needs no calibration to the recording level; the
    loudest frame always passes, so the result is never empty.
    """
    frame = max(1, round(sample_rate * VAD_FRAME_MS / 1000.0))
    count = -(-len(samples) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: len(samples)] = samples
    energy_db = 10.0 * np.log10(np.mean(padded.reshape(count, frame) ** 2, axis=1) + 1e-12)
    voiced = energy_db >= energy_db.max() - VAD_DYNAMIC_RANGE_DB
    hangover = round(VAD_HANGOVER_MS / VAD_FRAME_MS)
    widened = np.convolve(voiced.astype(np.int64), np.ones(2 * hangover + 1, dtype=np.int64), mode="same") > 0
    keep = np.repeat(widened, frame)[: len(samples)]
    return np.asarray(samples)[keep]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
