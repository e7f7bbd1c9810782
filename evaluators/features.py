"""Log-mel filterbank features, the input every speaker model here consumes.

Kaldi-compatible filterbanks (via kaldi-native-fbank, no torchaudio needed) with per-utterance
mean normalisation, which removes a stationary channel's log-spectral offset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import kaldi_native_fbank as knf
import numpy as np
import torch

from evaluators.cache_keys import KEYED_WHEN_SET
from evaluators.data.synthetic import Utterance

KALDI = "kaldi"
"""The engine's own front-end: Kaldi-compatible log-mel filterbanks with the `FbankConfig` settings."""

_INT16_SCALE = 32768.0
"""Kaldi expects samples in int16 range; float audio in [-1, 1] is scaled by this."""


@dataclass(frozen=True)
class FbankConfig:
    """Filterbank settings.

    Attributes:
        num_mel_bins: Mel bands per frame.
        frame_length_ms: Analysis window length.
        frame_shift_ms: Hop between frames.
        sample_rate: Sample rate of the audio in Hz.
        dither: Kaldi dither amount (int16 units); 0 keeps features deterministic.
        frontend: Which front-end computes the features.
    """

    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000
    dither: float = 0.0
    frontend: str = field(default=KALDI, metadata=KEYED_WHEN_SET)
    """`kaldi` (these settings), or a pretrained family's own front-end (`evaluators.frontends`),
    which fixes its own bands and frames."""

    def __post_init__(self) -> None:
        if self.num_mel_bins < 1:
            raise ValueError(f"fbank.num_mel_bins={self.num_mel_bins}: must be >= 1")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms:
            raise ValueError(
                f"fbank.frame_shift_ms={self.frame_shift_ms}: must be in (0, frame_length_ms]"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"fbank.sample_rate={self.sample_rate}: must be positive")
        if self.dither < 0:
            raise ValueError(f"fbank.dither={self.dither}: must be non-negative")

    @property
    def frame_length_samples(self) -> int:
        """Samples in one analysis window: the shortest audio that yields a frame."""
        return int(self.sample_rate * 0.001 * self.frame_length_ms)  # as Kaldi computes it


@dataclass
class FeatureSet:
    """Features of a set of utterances with their speaker labels.

    Attributes:
        features: One float32 [frames, num_mel_bins] tensor per utterance.
        labels: Speaker index per utterance, 0..num_speakers-1 in sorted speaker-id order.
        speaker_ids: Speaker id per utterance.
        utterance_ids: Utterance id per utterance.
    """

    features: list[torch.Tensor]
    labels: list[int]
    speaker_ids: list[str]
    utterance_ids: list[str]

    def __post_init__(self) -> None:
        lengths = {len(self.features), len(self.labels), len(self.speaker_ids), len(self.utterance_ids)}
        if len(lengths) != 1:
            raise ValueError(
                f"FeatureSet fields differ in length: features={len(self.features)}, "
                f"labels={len(self.labels)}, speaker_ids={len(self.speaker_ids)}, "
                f"utterance_ids={len(self.utterance_ids)}"
            )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def num_speakers(self) -> int:
        """Number of distinct speakers."""
        return len(set(self.speaker_ids))


def compute_fbank(audio: np.ndarray, config: FbankConfig) -> torch.Tensor:
    """Mean-normalised log-mel filterbanks of one utterance.

    Args:
        audio: Mono float samples in [-1, 1] at `config.sample_rate`.
        config: Filterbank settings.

    Returns:
        float32 [frames, num_mel_bins], frames = 1 + (samples - frame length) // frame shift.

    Raises:
        ValueError: If `audio` is not 1-D or is shorter than one frame.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio has shape {samples.shape}: expected mono 1-D samples")
    if len(samples) < config.frame_length_samples:
        raise ValueError(
            f"audio has {len(samples)} samples ({1000.0 * len(samples) / config.sample_rate:.1f} ms): "
            f"need at least {config.frame_length_samples} (one {config.frame_length_ms} ms frame "
            f"at {config.sample_rate} Hz)"
        )
    extractor = knf.OnlineFbank(_fbank_options(config))
    # A list converts far faster than a numpy array through the binding.
    extractor.accept_waveform(config.sample_rate, (samples * _INT16_SCALE).tolist())
    extractor.input_finished()
    frames = np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])
    return mean_normalize(torch.from_numpy(frames.astype(np.float32, copy=False)))


def mean_normalize(features: torch.Tensor) -> torch.Tensor:
    """Subtract the per-bin mean over time (cepstral-mean-style channel normalisation)."""
    return features - features.mean(dim=0, keepdim=True)


def random_crop(features: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of `frames` consecutive frames, wrapping around when the input is shorter.

    Short inputs are tiled (repetition padding) rather than zero-padded, so every crop looks
    like speech to the model.

    Args:
        features: [time, bins] features.
        frames: Length of the crop.
        generator: Source of the random offset (reproducible crops).

    Returns:
        [frames, bins] tensor.
    """
    if frames < 1:
        raise ValueError(f"frames={frames}: must be >= 1")
    length = features.shape[0]
    if length == 0:
        raise ValueError("cannot crop features with 0 frames")
    if length >= frames:
        start = int(torch.randint(length - frames + 1, (1,), generator=generator))
        return features[start : start + frames]
    start = int(torch.randint(length, (1,), generator=generator))
    tiled = features.repeat(-(-(start + frames) // length), 1)
    return tiled[start : start + frames]


def extract_features(
    utterances: Sequence[Utterance],
    config: FbankConfig,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureSet:
    """Filterbanks of every utterance, labelled by speaker.

    Args:
        utterances: Utterances with `utterance_id`, `speaker_id` and `audio`.
        config: Filterbank settings; `sample_rate` must be the audio's.
        progress: Called with (done, total) after each utterance.

    Returns:
        A `FeatureSet` in the order of `utterances`.
    """
    features = []
    for done, utterance in enumerate(utterances, start=1):
        features.append(compute_fbank(utterance.audio, config))
        if progress is not None:
            progress(done, len(utterances))
    speaker_ids = [u.speaker_id for u in utterances]
    return FeatureSet(
        features=features,
        labels=speaker_labels(speaker_ids),
        speaker_ids=speaker_ids,
        utterance_ids=[u.utterance_id for u in utterances],
    )


def speaker_labels(speaker_ids: Sequence[str]) -> list[int]:
    """Class index of each speaker id: its rank among the sorted distinct ids (order-independent)."""
    index = {speaker: rank for rank, speaker in enumerate(sorted(set(speaker_ids)))}
    return [index[speaker] for speaker in speaker_ids]


def _fbank_options(config: FbankConfig) -> knf.FbankOptions:
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = config.sample_rate
    options.frame_opts.frame_length_ms = config.frame_length_ms
    options.frame_opts.frame_shift_ms = config.frame_shift_ms
    options.frame_opts.dither = config.dither
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = config.num_mel_bins
    return options
