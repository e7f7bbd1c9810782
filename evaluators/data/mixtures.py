"""Two-speaker mixtures for target-speaker extraction: a fixed seeded test set and random training batches.

A mixture is a target utterance plus an interfering speaker's utterance at a random relative
level (target-to-interferer ratio, default -5..5 dB), and an enrollment utterance of the target
speaker that is never the utterance in the mixture. Mixtures are drawn either from a pool of
utterances per speaker (the synthetic corpus, a folder-per-speaker corpus) or, for WSJ0-2mix /
Libri2Mix-style data, given as fixed mixtures that training crops.

Randomness is keyed: test mixture i depends only on (seed, i) and the pool, so growing the test
set leaves its first mixtures unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

_TEST_STREAM = 0
_SILENCE_POWER = 1e-12


class MixtureError(ValueError):
    """Mixtures that cannot be made (too few speakers or utterances, unknown speaker, bad files)."""


@dataclass(frozen=True)
class MixtureConfig:
    """The `mixtures:` block of an extraction run.

    Attributes:
        level_db: (low, high) range of the target-to-interferer level, uniform per mixture.
        test_mixtures: Size of the fixed test set (of two-speaker folders: a seeded subset).
        segment_seconds: Length of training crops.
        enrollment_seconds: Length of the enrollment crops in training (tests use whole utterances).
        seed: Root of the test set's randomness (independent of the run seed).
        two_speaker_train: A WSJ0-2mix / Libri2Mix-style folder to train on instead of mixing
            the `data:` block's training speakers (see `evaluators.data.mixture_corpora`).
        two_speaker_test: Such a folder to test on instead of mixing the first evaluation set's.
        enrollment_list: File in each two-speaker folder naming every mixture's target and enrollment.
    """

    level_db: tuple[float, float] = (-5.0, 5.0)
    test_mixtures: int = 200
    segment_seconds: float = 2.0
    enrollment_seconds: float = 2.0
    seed: int = 0
    two_speaker_train: str = ""
    two_speaker_test: str = ""
    enrollment_list: str = "enrollment.txt"

    def __post_init__(self) -> None:
        level = self.level_db
        if not (isinstance(level, (tuple, list)) and len(level) == 2 and all(map(_is_number, level))):
            raise MixtureError(f"mixtures.level_db={level!r}: must be a pair of numbers (low, high)")
        object.__setattr__(self, "level_db", (float(level[0]), float(level[1])))
        if self.level_db[0] > self.level_db[1]:
            raise MixtureError(f"mixtures.level_db={list(self.level_db)}: low must not exceed high")
        if self.test_mixtures < 1:
            raise MixtureError(f"mixtures.test_mixtures={self.test_mixtures}: must be >= 1")
        for key in ("segment_seconds", "enrollment_seconds"):
            if getattr(self, key) <= 0:
                raise MixtureError(f"mixtures.{key}={getattr(self, key)}: must be > 0")
        if self.seed < 0:
            raise MixtureError(f"mixtures.seed={self.seed}: must be non-negative")


@dataclass(frozen=True, eq=False)
class Mixture:
    """One test or training mixture (float32 waveforms at one sample rate).

    Attributes:
        mixture: Target plus interferer, as long as `target`.
        target: The reference the extractor must recover.
        enrollment: Another utterance of the target speaker.
        target_speaker: Speaker id of the target.
        level_db: Target-to-interferer level in dB.
    """

    mixture: np.ndarray
    target: np.ndarray
    enrollment: np.ndarray
    target_speaker: str
    level_db: float


@dataclass(frozen=True, eq=False)
class SpeakerPool:
    """Utterances grouped by speaker at one sample rate: what mixtures are drawn from.

    Every speaker needs two utterances (one to mix, another to enrol) and the pool two speakers.
    """

    sample_rate: int
    utterances: Mapping[str, Sequence[np.ndarray]] = field(default_factory=dict)
    origin: str = "pool"

    def __post_init__(self) -> None:
        if len(self.utterances) < 2:
            count = len(self.utterances)
            raise MixtureError(f"{self.origin}: {count} speaker(s); two-speaker mixtures need at least 2")
        for speaker, utterances in self.utterances.items():
            if len(utterances) < 2:
                raise MixtureError(
                    f"{self.origin}: speaker {speaker!r} has {len(utterances)} utterance(s); need 2 "
                    "(one to mix, a different one to enrol)"
                )

    @property
    def speakers(self) -> list[str]:
        return sorted(self.utterances)

    def utterances_of(self, speaker: str) -> Sequence[np.ndarray]:
        """The speaker's utterances; an unknown speaker is a clear error."""
        if speaker not in self.utterances:
            raise MixtureError(f"{self.origin}: unknown speaker {speaker!r}; {len(self.utterances)} speakers known")
        return self.utterances[speaker]

    def enrollment(self, speaker: str, rng: np.random.Generator, exclude: int) -> np.ndarray:
        """A random utterance of `speaker` other than its utterance number `exclude`."""
        utterances = self.utterances_of(speaker)
        choice = int(rng.integers(len(utterances) - 1))
        return utterances[choice + (choice >= exclude)]


@dataclass(frozen=True)
class MixtureBatch:
    """Equal-length training examples as tensors: mixture and target `[B, T]`, enrollment `[B, T_e]`,
    and the target speaker's index in the pool's sorted speakers `[B]` (-1 for fixed mixtures)."""

    mixture: torch.Tensor
    target: torch.Tensor
    enrollment: torch.Tensor
    speaker: torch.Tensor


def mix(target: np.ndarray, interferer: np.ndarray, level_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, target): both signals cut to the shorter one, the interferer scaled so the target is `level_db` louder.

    A silent interferer is added as is (the mixture is then the target).
    """
    length = min(len(target), len(interferer))
    target, interferer = target[:length].astype(np.float32), interferer[:length].astype(np.float32)
    interferer_power = float(np.mean(interferer.astype(np.float64) ** 2))
    gain = 1.0
    if interferer_power > _SILENCE_POWER:
        target_power = float(np.mean(target.astype(np.float64) ** 2))
        gain = np.sqrt(target_power / interferer_power * 10.0 ** (-level_db / 10.0))
    return (target + np.float32(gain) * interferer).astype(np.float32), target


def seeded_test_set(pool: SpeakerPool, count: int, level_db: tuple[float, float], seed: int) -> list[Mixture]:
    """`count` fixed mixtures from the pool; target speakers go round the pool in order.

    Mixture i is cut to the shorter of its two utterances (WSJ0-2mix's "min" mode); its
    enrollment is a whole other utterance of the target speaker.
    """
    speakers = pool.speakers
    mixtures = []
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TEST_STREAM, index)))
        target_speaker = speakers[index % len(speakers)]
        mixtures.append(_draw(pool, rng, target_speaker, level_db, crop=None))
    return mixtures


def subset(mixtures: Sequence[Mixture], count: int, seed: int) -> list[Mixture]:
    """A seeded subset of `count` fixed mixtures (all of them, in order, when fewer)."""
    if count >= len(mixtures):
        return list(mixtures)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TEST_STREAM,)))
    return [mixtures[index] for index in sorted(rng.choice(len(mixtures), count, replace=False).tolist())]


def training_batch(
    source: SpeakerPool | Sequence[Mixture],
    rng: np.random.Generator,
    batch_size: int,
    segment_samples: int,
    enrollment_samples: int,
    level_db: tuple[float, float],
) -> MixtureBatch:
    """Random training examples of `segment_samples` samples.

    From a pool, each example mixes fresh random utterances, each placed at a random offset in
    the segment (cropped when longer, zero-padded when shorter), so the target may start or stop
    inside it; from fixed mixtures, each is a random crop of one of them.
    """
    examples = []
    pooled = isinstance(source, SpeakerPool)
    speakers = {speaker: index for index, speaker in enumerate(source.speakers)} if pooled else {}
    for _ in range(batch_size):
        if isinstance(source, SpeakerPool):
            speaker = source.speakers[int(rng.integers(len(source.speakers)))]
            example = _draw(source, rng, speaker, level_db, crop=segment_samples)
        else:
            example = _crop_mixture(source[int(rng.integers(len(source)))], rng, segment_samples)
        examples.append(dataclasses.replace(example, enrollment=_place(example.enrollment, enrollment_samples, rng)))
    return MixtureBatch(
        mixture=torch.from_numpy(np.stack([example.mixture for example in examples])),
        target=torch.from_numpy(np.stack([example.target for example in examples])),
        enrollment=torch.from_numpy(np.stack([example.enrollment for example in examples])),
        speaker=torch.tensor([speakers.get(example.target_speaker, -1) for example in examples], dtype=torch.int64),
    )


def _draw(
    pool: SpeakerPool, rng: np.random.Generator, target_speaker: str, level_db: tuple[float, float], crop: int | None
) -> Mixture:
    """Mix an utterance of `target_speaker` with one of another random speaker, plus an enrollment."""
    targets = pool.utterances_of(target_speaker)
    target_index = int(rng.integers(len(targets)))
    others = [speaker for speaker in pool.speakers if speaker != target_speaker]
    interferers = pool.utterances_of(others[int(rng.integers(len(others)))])
    interferer = interferers[int(rng.integers(len(interferers)))]
    level = float(rng.uniform(*level_db))
    target = targets[target_index]
    if crop is not None:
        target, interferer = _place(target, crop, rng), _place(interferer, crop, rng)
    mixture, target = mix(target, interferer, level)
    return Mixture(mixture, target, pool.enrollment(target_speaker, rng, target_index), target_speaker, level)


def _crop_mixture(example: Mixture, rng: np.random.Generator, samples: int) -> Mixture:
    """The same random window of a fixed mixture and its target (zero-padded when shorter)."""
    start = int(rng.integers(max(1, len(example.mixture) - samples + 1)))
    window = slice(start, start + samples)
    return dataclasses.replace(
        example, mixture=_pad(example.mixture[window], samples), target=_pad(example.target[window], samples)
    )


def _place(signal: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random `samples`-long window of a longer signal, or a shorter one at a random offset in zeros."""
    if len(signal) >= samples:
        start = int(rng.integers(len(signal) - samples + 1))
        return signal[start : start + samples].astype(np.float32)
    placed = np.zeros(samples, dtype=np.float32)
    offset = int(rng.integers(samples - len(signal) + 1))
    placed[offset : offset + len(signal)] = signal
    return placed


def _pad(signal: np.ndarray, samples: int) -> np.ndarray:
    padded = np.zeros(samples, dtype=np.float32)
    padded[: len(signal)] = signal
    return padded


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
