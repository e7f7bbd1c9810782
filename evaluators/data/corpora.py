"""Real speech corpora on disk, read into one common list of utterances.

Each adapter turns a layout into a `Corpus`: utterances with a key (unique in the corpus and
what trial lists name), a speaker and a file (plus a segment for Kaldi `segments`). Layouts:

- `folder`: `<root>/<speaker>/**/<utterance>.<wav|flac|ogg|...>` (any depth below the speaker);
- `voxceleb`: `<root>/<idXXXXX>/<video>/<utterance>.wav`, keys as in the official trial lists;
- `librispeech`: `<root>/<speaker>/<chapter>/<utterance>.flac`;
- `kaldi`: a data directory with `wav.scp`, `utt2spk` and optional `segments`.

Selection (speaker-disjoint seeded splits, seeded subsets) and the bad-audio check work on
any `Corpus`, so every layout gets them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluators.data.audio import AUDIO_SUFFIXES, AudioError, AudioInfo, Segment, audio_info

SPEAKER_PARTS = ("all", "train", "test")
"""Which speakers of a corpus a source uses: all, or one side of a speaker-disjoint split."""

BAD_AUDIO_PATHS_SHOWN = 3
"""How many bad files a report names (the count covers all of them)."""


class CorpusError(ValueError):
    """A corpus that cannot be used (missing, wrong layout, too few speakers); names the path."""


@dataclass(frozen=True)
class CorpusUtterance:
    """One utterance of a corpus.

    Attributes:
        key: Unique id in the corpus: the path relative to the root for file layouts (what
            VoxCeleb trial lists name), the utterance id for Kaldi data directories.
        speaker: Speaker id.
        path: The audio file.
        segment: The part of the file that is this utterance (None: the whole file).
    """

    key: str
    speaker: str
    path: str
    segment: Segment | None = None


@dataclass(frozen=True)
class Corpus:
    """Utterances of a corpus, in key order."""

    root: str
    utterances: tuple[CorpusUtterance, ...]

    @property
    def speakers(self) -> list[str]:
        """Distinct speaker ids, sorted."""
        return sorted({utterance.speaker for utterance in self.utterances})

    def select(self, keep: Callable[[CorpusUtterance], bool]) -> Corpus:
        """The utterances for which `keep` is true."""
        return Corpus(self.root, tuple(utterance for utterance in self.utterances if keep(utterance)))

    def require_speakers(self, what: str, minimum: int = 2) -> None:
        """Raise a `CorpusError` naming `what` if fewer than `minimum` speakers are left."""
        count = len(self.speakers)
        if count < minimum:
            found = f"{count} speaker(s) ({len(self.utterances)} utterances)"
            raise CorpusError(f"{self.root}: {what} has {found}; need at least {minimum}")


@dataclass(frozen=True)
class BadAudio:
    """An utterance left out of a corpus, with why (`path` also names the segment, if any)."""

    key: str
    path: str
    reason: str
    detail: str


@dataclass(frozen=True)
class BadAudioReport:
    """The files a check left out of a corpus.

    Attributes:
        checked: Utterances checked.
        bad: The files left out, in corpus order.
    """

    checked: int
    bad: tuple[BadAudio, ...] = ()

    def summary(self) -> str:
        """Count per reason and the first paths, e.g. `2 of 40 files skipped (1 empty, 1 too short): ...`."""
        if not self.bad:
            return f"all {self.checked} files usable"
        reasons = ", ".join(f"{count} {reason}" for reason, count in Counter(b.reason for b in self.bad).items())
        shown = "; ".join(f"{b.path} ({b.reason}: {b.detail})" for b in self.bad[:BAD_AUDIO_PATHS_SHOWN])
        more = f"; and {len(self.bad) - BAD_AUDIO_PATHS_SHOWN} more" if len(self.bad) > BAD_AUDIO_PATHS_SHOWN else ""
        return f"{len(self.bad)} of {self.checked} files skipped ({reasons}): {shown}{more}"


def read_folder_corpus(root: str | os.PathLike[str]) -> Corpus:
    """One folder per speaker, audio files at any depth below it."""
    return _read_speaker_tree(root, None, "<root>/<speaker>/**/<utterance>.<wav|flac|ogg>")


def read_voxceleb_corpus(root: str | os.PathLike[str]) -> Corpus:
    """VoxCeleb 1/2 (audio converted to WAV/FLAC): `<root>/<idXXXXX>/<video>/<utterance>.wav`."""
    return _read_speaker_tree(root, 3, "<root>/<idXXXXX>/<video>/<utterance>.wav")


def read_librispeech_corpus(root: str | os.PathLike[str]) -> Corpus:
    """LibriSpeech (one of its parts, e.g. `train-clean-100`): `<root>/<speaker>/<chapter>/<utterance>.flac`."""
    return _read_speaker_tree(root, 3, "<root>/<speaker>/<chapter>/<utterance>.flac")


def read_kaldi_corpus(root: str | os.PathLike[str]) -> Corpus:
    """A Kaldi data directory: `wav.scp` (recording -> file), `utt2spk`, optional `segments`.

    Relative paths in `wav.scp` are taken relative to the data directory. Piped commands
    (`sox ... |`) are not run: convert such recordings to files first.
    """
    directory = _existing_directory(root)
    recordings = {}
    for line_number, (recording, path) in _kaldi_table(directory / "wav.scp", 2):
        if path.endswith("|"):
            where = f"{directory / 'wav.scp'}:{line_number}"
            raise CorpusError(f"{where}: piped command {path!r} is not supported; give a file path")
        recordings[recording] = str(directory / path)
    speakers = {utterance: speaker for _, (utterance, speaker) in _kaldi_table(directory / "utt2spk", 2)}
    segments_file = directory / "segments"
    if segments_file.exists():
        sources = {}
        for line_number, (utterance, recording, start, end) in _kaldi_table(segments_file, 4):
            if recording not in recordings:
                raise CorpusError(f"{segments_file}:{line_number}: recording {recording!r} is not in wav.scp")
            sources[utterance] = (recordings[recording], _segment(segments_file, line_number, start, end))
    else:
        sources = {recording: (path, None) for recording, path in recordings.items()}
    missing = sorted(set(speakers) - set(sources))
    if missing:
        listing = "segments" if segments_file.exists() else "wav.scp"
        where = directory / "utt2spk"
        raise CorpusError(f"{where}: utterance {missing[0]!r} is not in {listing} ({len(missing)} missing)")
    utterances = (CorpusUtterance(key, speakers[key], *sources[key]) for key in sorted(speakers))
    return Corpus(str(directory), tuple(utterances))


CORPUS_READERS: dict[str, Callable[[str | os.PathLike[str]], Corpus]] = {
    "folder": read_folder_corpus,
    "kaldi": read_kaldi_corpus,
    "voxceleb": read_voxceleb_corpus,
    "librispeech": read_librispeech_corpus,
}
"""Corpus layouts by the name a config's `corpus:` key gives."""


def read_corpus(kind: str, root: str | os.PathLike[str]) -> Corpus:
    """The corpus at `root` in layout `kind` (a key of `CORPUS_READERS`)."""
    if kind not in CORPUS_READERS:
        raise CorpusError(f"corpus={kind!r}: expected one of {sorted(CORPUS_READERS)}")
    return CORPUS_READERS[kind](root)


def split_speakers(corpus: Corpus, part: str, test_fraction: float, seed: int) -> Corpus:
    """One side of a seeded, speaker-disjoint train/test split (or all of it).

    The test side holds `round(test_fraction * speakers)` speakers (at least one) drawn by a
    permutation of the sorted speaker ids, so a given seed always splits a corpus the same way
    and the two sides never share a speaker.
    """
    if part not in SPEAKER_PARTS:
        raise CorpusError(f"speakers={part!r}: expected one of {list(SPEAKER_PARTS)}")
    if part == "all":
        return corpus
    if not 0.0 < test_fraction < 1.0:
        raise CorpusError(f"test_fraction={test_fraction}: must be in (0, 1)")
    speakers = corpus.speakers
    order = np.random.default_rng(seed).permutation(len(speakers))
    test_count = max(1, round(test_fraction * len(speakers)))
    test = {speakers[index] for index in order[:test_count]}
    return corpus.select(lambda utterance: (utterance.speaker in test) == (part == "test"))


def limit_corpus(
    corpus: Corpus, max_speakers: int | None, max_utterances_per_speaker: int | None, seed: int
) -> Corpus:
    """A seeded subset: at most `max_speakers` speakers, each with at most that many utterances.

    Lets a laptop-sized run use a slice of a large corpus (e.g. VoxCeleb2) reproducibly.
    """
    rng = np.random.default_rng(seed)
    speakers = corpus.speakers
    if max_speakers is not None and len(speakers) > max_speakers:
        speakers = sorted(speakers[index] for index in rng.choice(len(speakers), max_speakers, replace=False))
    keys_by_speaker: dict[str, list[str]] = {}
    for utterance in corpus.utterances:
        keys_by_speaker.setdefault(utterance.speaker, []).append(utterance.key)
    kept: set[str] = set()
    for speaker in speakers:
        keys = keys_by_speaker[speaker]
        if max_utterances_per_speaker is not None and len(keys) > max_utterances_per_speaker:
            keys = [keys[index] for index in rng.choice(len(keys), max_utterances_per_speaker, replace=False)]
        kept.update(keys)
    return corpus.select(lambda utterance: utterance.key in kept)


def check_audio(
    corpus: Corpus, min_seconds: float, expected_sample_rate: int | None = None, strict: bool = False
) -> tuple[Corpus, BadAudioReport]:
    """Leave out unreadable, empty, too short or wrong-rate files, reading headers only.

    Args:
        min_seconds: Shortest usable utterance (segment length for segmented recordings).
        expected_sample_rate: When set, files at another rate are bad ("wrong sample rate");
            when None every rate is accepted (and resampled when read).
        strict: Raise instead of skipping.

    Returns:
        The usable corpus and the report of what was left out.

    Raises:
        CorpusError: In strict mode, if any file is bad; the message has the count and the
            first paths.
    """
    headers: dict[str, AudioInfo | AudioError] = {}
    bad = []
    for utterance in corpus.utterances:
        if utterance.path not in headers:
            try:
                headers[utterance.path] = audio_info(utterance.path)
            except AudioError as error:
                headers[utterance.path] = error
        problem = _audio_problem(utterance, headers[utterance.path], min_seconds, expected_sample_rate)
        if problem is not None:
            shown = utterance.path if utterance.segment is None else f"{utterance.path} [{utterance.key}]"
            bad.append(BadAudio(utterance.key, shown, *problem))
    report = BadAudioReport(len(corpus.utterances), tuple(bad))
    if bad and strict:
        raise CorpusError(f"{corpus.root}: {report.summary()} (strict mode)")
    skipped = {b.key for b in bad}
    return corpus.select(lambda utterance: utterance.key not in skipped), report


def _audio_problem(
    utterance: CorpusUtterance, header: AudioInfo | AudioError, min_seconds: float, expected_sample_rate: int | None
) -> tuple[str, str] | None:
    """(reason, detail) of why an utterance is unusable, or None."""
    if isinstance(header, AudioError):
        return header.reason, header.detail
    segment = utterance.segment or Segment()
    end = header.seconds if segment.end is None else min(header.seconds, segment.end)
    seconds = end - segment.start
    if seconds <= 0:
        where = "" if utterance.segment is None else f" before segment {segment.start}-{segment.end} s"
        return "empty", f"{header.seconds:.2f} s of audio{where}"
    if expected_sample_rate is not None and header.sample_rate != expected_sample_rate:
        return "wrong sample rate", f"{header.sample_rate} Hz, expected {expected_sample_rate} Hz"
    if seconds < min_seconds:
        return "too short", f"{seconds:.2f} s < {min_seconds} s"
    return None


def _read_speaker_tree(root: str | os.PathLike[str], depth: int | None, layout: str) -> Corpus:
    """Audio files under `<root>/<speaker>/...`; `depth` = path components per file (None: any >= 2)."""
    directory = _existing_directory(root)
    utterances = []
    misplaced = 0
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        parts = path.relative_to(directory).parts
        if len(parts) < 2 or (depth is not None and len(parts) != depth):
            misplaced += 1
            continue
        utterances.append(CorpusUtterance("/".join(parts), parts[0], str(path)))
    if not utterances:
        found = f"; {misplaced} audio file(s) at other depths" if misplaced else ""
        raise CorpusError(f"{directory}: no audio files in the layout {layout}{found}")
    return Corpus(str(directory), tuple(utterances))


def _existing_directory(root: str | os.PathLike[str]) -> Path:
    directory = Path(root)
    if not directory.is_dir():
        raise CorpusError(f"{directory}: corpus directory not found")
    return directory


def _kaldi_table(path: Path, fields: int) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of a Kaldi table file; the last field takes the rest of the line."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing (a Kaldi data directory needs wav.scp and utt2spk)")
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        values = line.strip().split(maxsplit=fields - 1)
        if len(values) != fields:
            raise CorpusError(f"{path}:{line_number}: expected {fields} fields, got {line.strip()!r}")
        yield line_number, values


def _segment(path: Path, line_number: int, start: str, end: str) -> Segment:
    try:
        start_seconds, end_seconds = float(start), float(end)
        return Segment(start_seconds, None if end_seconds < 0 else end_seconds)
    except ValueError as error:
        raise CorpusError(f"{path}:{line_number}: bad segment times {start!r} {end!r} ({error})") from None
