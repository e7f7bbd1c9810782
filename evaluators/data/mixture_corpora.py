"""Where extraction mixtures come from: the `data:` block's sources, or two-speaker folders.

- the synthetic corpus (a `data:` source without `corpus:`): its train split trains, its test
  split makes the test mixtures; rendered once at the run's sample rate and cached by content
  hash like its features;
- a corpus on disk (`corpus: folder` = `<root>/<speaker>/**/<utterance>.wav`, or `librispeech`,
  `voxceleb`, `kaldi`; see `evaluators.data.corpora`): every usable utterance of the source's
  speaker selection, resampled to the run's rate, bad audio skipped and logged (or an error in
  strict mode);
- two-speaker folders (WSJ0-2mix `wav8k/min/tr` and `tt`, Libri2Mix `wav8k/min/train-100` and
  `test`), named by `mixtures.two_speaker_train` / `two_speaker_test`: a mixture folder (`mix/`,
  or Libri2Mix's `mix_clean/`, `mix_both/`, `mix_single/`), `s1/` and `s2/` holding files of the
  same names, and an enrollment list with one line per mixture used:
  `<mixture file name> <s1|s2> <enrollment file>` (the target source and another utterance of
  that speaker; relative paths are relative to the folder; `#` starts a comment).

The training side of the `data:` block trains; its first evaluation set gives the test mixtures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from evaluators.data.audio import AudioError, audio_info, energy_vad, load_audio
from evaluators.data.cache import cached_tensors, content_hash
from evaluators.data.corpora import CorpusError, check_audio
from evaluators.data.corpus_features import select_utterances
from evaluators.data.mixtures import Mixture, MixtureConfig, MixtureError, SpeakerPool, seeded_test_set, subset
from evaluators.data.sources import CorpusConfig, Source
from evaluators.data.synthetic import CORPUS_VERSION, SyntheticCorpusConfig, generate_speaker_utterances

MIXTURE_FOLDERS = ("mix", "mix_clean", "mix_both", "mix_single")
"""Names the mixture folder of a two-speaker set may have (WSJ0-2mix, then Libri2Mix's)."""

_TARGETS = ("s1", "s2")
_logger = logging.getLogger(__name__)
T = TypeVar("T")

MixtureSource = SpeakerPool | list[Mixture]
"""Training data: a pool to draw fresh mixtures from, or fixed mixtures to crop."""


def training_source(
    config: MixtureConfig, source: Source, sample_rate: int, cache_root: str | os.PathLike[str]
) -> MixtureSource:
    """What the extractor trains on: the two-speaker training folder when named, else `source`'s speakers."""
    if config.two_speaker_train:
        return read_two_speaker_folder(config.two_speaker_train, config.enrollment_list, sample_rate)
    return speaker_pool(source, "train", sample_rate, cache_root)


def evaluation_mixtures(
    config: MixtureConfig, source: Source, sample_rate: int, cache_root: str | os.PathLike[str]
) -> list[Mixture]:
    """The fixed, seeded test set: from the two-speaker test folder when named, else mixed from `source`."""
    if config.two_speaker_test:
        return subset(read_two_speaker_folder(config.two_speaker_test, config.enrollment_list, sample_rate),
                      config.test_mixtures, config.seed)  # fmt: skip
    pool = speaker_pool(source, "test", sample_rate, cache_root)
    return seeded_test_set(pool, config.test_mixtures, config.level_db, config.seed)


def speaker_pool(source: Source, split: str, sample_rate: int, cache_root: str | os.PathLike[str]) -> SpeakerPool:
    """Utterances by speaker of a `data:` source; `split` picks the synthetic corpus's split."""
    if isinstance(source, SyntheticCorpusConfig):
        if source.sample_rate != sample_rate:
            rates = f"synthetic corpus at {source.sample_rate} Hz: the run's sample rate is {sample_rate} Hz"
            raise MixtureError(rates)
        return synthetic_pool(source, split, cache_root)
    return corpus_pool(source, sample_rate)


def synthetic_pool(corpus: SyntheticCorpusConfig, split: str, cache_root: str | os.PathLike[str]) -> SpeakerPool:
    """Every utterance of one split of the synthetic corpus, rendered once and cached by content hash."""
    key = content_hash("synthetic-audio", CORPUS_VERSION, corpus, split)
    entry = cached_tensors(cache_root, "audio", key, lambda: _render_split(corpus, split))
    waveforms = torch.split(entry["audio"], entry["lengths"].tolist())
    utterances: dict[str, list[np.ndarray]] = {}
    for speaker, waveform in zip(entry["speaker_ids"], waveforms):
        utterances.setdefault(speaker, []).append(waveform.numpy().copy())
    return SpeakerPool(corpus.sample_rate, utterances, origin=f"synthetic {split} split")


def corpus_pool(source: CorpusConfig, sample_rate: int) -> SpeakerPool:
    """Every usable utterance a corpus source selects, mono at `sample_rate`, grouped by speaker.

    Unreadable, empty, too short or wrong-rate files are left out and logged (an error when the
    source is `strict`); the source's `vad` and `max_seconds` apply as for verification.
    """
    try:
        corpus, report = check_audio(
            select_utterances(source), source.min_seconds, source.expected_sample_rate, source.strict
        )
    except CorpusError as error:
        raise MixtureError(str(error)) from None
    if report.bad:
        _logger.warning("%s: %s", source.path, report.summary())
    utterances: dict[str, list[np.ndarray]] = {}
    for utterance in corpus.utterances:
        samples = _read(lambda: load_audio(utterance.path, sample_rate, utterance.segment))
        if source.vad:
            samples = energy_vad(samples, sample_rate)
        if source.max_seconds is not None:
            samples = samples[: round(source.max_seconds * sample_rate)]
        utterances.setdefault(utterance.speaker, []).append(samples)
    return SpeakerPool(sample_rate, utterances, origin=f"{source.corpus} corpus {source.path}")


def read_two_speaker_folder(root: str | os.PathLike[str], enrollment_list: str, sample_rate: int) -> list[Mixture]:
    """The mixtures an enrollment list names, from a WSJ0-2mix / Libri2Mix-style folder.

    The mixture and its sources must share one sample rate and length (a mismatch is an error
    naming the files); all are resampled to `sample_rate` when the set has another rate.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise MixtureError(f"{folder}: two-speaker folder not found")
    mixture_folder = next((folder / name for name in MIXTURE_FOLDERS if (folder / name).is_dir()), None)
    missing = [name for name in _TARGETS if not (folder / name).is_dir()]
    if mixture_folder is None or missing:
        raise MixtureError(
            f"{folder}: expected a mixture folder ({' or '.join(MIXTURE_FOLDERS)}) and s1/, s2/ "
            f"(missing: {', '.join(missing) or 'mixture folder'})"
        )
    list_path = folder / enrollment_list
    if not list_path.is_file():
        raise MixtureError(f"{list_path}: enrollment list not found (lines: <mixture file> <s1|s2> <enrollment file>)")
    mixtures = []
    for line_number, (name, target, enrollment) in _enrollment_lines(list_path):
        where = f"{list_path}:{line_number}"
        files = [mixture_folder / name, folder / target / name]
        for path in [*files, _resolve(folder, enrollment)]:
            if not path.is_file():
                raise MixtureError(f"{where}: {path} not found")
        _check_same_format(where, files)
        mixture, reference = (_read(lambda path=path: load_audio(path, sample_rate)) for path in files)
        mixtures.append(
            Mixture(
                mixture=mixture,
                target=reference,
                enrollment=_read(lambda: load_audio(_resolve(folder, enrollment), sample_rate)),
                target_speaker=f"{name}:{target}",
                level_db=_level_db(reference, mixture - reference),
            )
        )
    if not mixtures:
        raise MixtureError(f"{list_path}: no mixtures listed")
    return mixtures


def _render_split(corpus: SyntheticCorpusConfig, split: str) -> dict:
    """One concatenated tensor plus lengths (fast to save and load, like the feature cache)."""
    utterances = [
        utterance
        for speaker in range(corpus.num_speakers(split))
        for utterance in generate_speaker_utterances(corpus, split, speaker)
    ]
    return {
        "audio": torch.from_numpy(np.concatenate([utterance.audio for utterance in utterances])),
        "lengths": torch.tensor([len(utterance.audio) for utterance in utterances], dtype=torch.int64),
        "speaker_ids": [utterance.speaker_id for utterance in utterances],
    }


def _enrollment_lines(path: Path) -> list[tuple[int, tuple[str, str, str]]]:
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 3 or fields[1] not in _TARGETS:
            expected = "expected '<mixture file> <s1|s2> <enrollment file>'"
            raise MixtureError(f"{path}:{number}: {expected}, got {line.strip()!r}")
        lines.append((number, (fields[0], fields[1], fields[2])))
    return lines


def _check_same_format(where: str, files: Sequence[Path]) -> None:
    """A mixture and its source must agree in sample rate and length, or they do not add up."""
    infos = [_read(lambda path=path: audio_info(path)) for path in files]
    if len({info.sample_rate for info in infos}) > 1:
        rates = ", ".join(f"{path} at {info.sample_rate} Hz" for path, info in zip(files, infos))
        raise MixtureError(f"{where}: sample-rate mismatch: {rates}")
    if len({info.frames for info in infos}) > 1:
        lengths = ", ".join(f"{path}: {info.frames} samples" for path, info in zip(files, infos))
        raise MixtureError(f"{where}: length mismatch: {lengths}")


def _resolve(folder: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else folder / candidate


def _level_db(target: np.ndarray, rest: np.ndarray) -> float:
    """Target-to-rest level of a given mixture, in dB (what the mixing script chose)."""
    powers = [np.mean(signal.astype(np.float64) ** 2) + 1e-12 for signal in (target, rest)]
    return float(10.0 * np.log10(powers[0] / powers[1]))


def _read(read: Callable[[], T]) -> T:
    try:
        return read()
    except AudioError as error:
        raise MixtureError(str(error)) from None
