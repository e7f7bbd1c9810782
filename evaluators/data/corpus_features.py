"""Filterbank features of a corpus on disk, cached by a fingerprint of its files.

The cache key hashes every selected utterance's key, speaker, path, segment, file size and
modification time with the reading and filterbank settings, so editing, adding or removing a
file (or changing a setting) builds a new entry, while a second run over an unchanged corpus
reads only file metadata. Bad audio is checked when the entry is built and its report is
stored with the features, so a cached run reports it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluators.data.audio import AudioError, energy_vad, load_audio
from evaluators.data.cache import cached_tensors, content_hash, pack_features, unpack_features
from evaluators.data.corpora import (
    BadAudio,
    BadAudioReport,
    Corpus,
    CorpusError,
    CorpusUtterance,
    check_audio,
    limit_corpus,
    read_corpus,
    split_speakers,
)
from evaluators.data.sources import CorpusConfig
from evaluators.data.trial_lists import Trial, resolve_trials, trial_keys
from evaluators.features import FbankConfig, FeatureSet
from evaluators.utterance_features import utterance_features

CORPUS_FEATURES_VERSION = 1
"""Bump whenever reading or featurising changes, so that stale cache entries are not reused."""

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusFeatures:
    """Features of a corpus's usable utterances.

    Attributes:
        features: One entry per usable utterance; utterance ids are the corpus keys.
        bad_audio: What was left out and why.
        key: The cache key: identifies these features for caches built on them (the teacher).
    """

    features: FeatureSet
    bad_audio: BadAudioReport
    key: str


def select_utterances(source: CorpusConfig, trials: Sequence[Trial] | None = None) -> Corpus:
    """The utterances a source uses: its speaker-split side and subset, or those its trials name.

    Raises:
        CorpusError: If the corpus is missing or malformed, or fewer than 2 speakers are left.
        TrialListError: If the trials name utterances the corpus does not have.
    """
    corpus = read_corpus(source.corpus, source.path)
    corpus = split_speakers(corpus, source.speakers, source.test_fraction, source.split_seed)
    corpus = limit_corpus(corpus, source.max_speakers, source.max_utterances_per_speaker, source.split_seed)
    if trials is not None:
        resolve_trials(trials, [utterance.key for utterance in corpus.utterances], f"{source.trials}")
        named = trial_keys(trials)
        corpus = corpus.select(lambda utterance: utterance.key in named)
    corpus.require_speakers(_selection(source))
    return corpus


def load_or_build_corpus_features(
    source: CorpusConfig,
    fbank: FbankConfig,
    cache_root: str | os.PathLike[str],
    trials: Sequence[Trial] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusFeatures:
    """Features of the utterances `select_utterances` picks, from the cache when unchanged.

    Unreadable, empty, too short or wrong-rate files are left out and logged as a warning
    (count and first paths), or raise in strict mode.

    Args:
        source: The corpus and its reading settings.
        fbank: Filterbank settings; audio is resampled to `fbank.sample_rate`.
        cache_root: Cache directory.
        trials: When given, only the utterances they name are read.
        progress: Called with (done, total) utterances while features are being built.

    Raises:
        CorpusError: As `select_utterances`; also when bad audio is found in strict mode, or
            fewer than 2 speakers have usable audio.
    """
    corpus = select_utterances(source, trials)
    key = content_hash("corpus", CORPUS_FEATURES_VERSION, _fingerprint(corpus), _reading_settings(source), fbank)
    entry = cached_tensors(cache_root, "features", key, lambda: _build_features(corpus, source, fbank, progress))
    report = BadAudioReport(int(entry["checked"]), tuple(BadAudio(*row) for row in entry["bad_audio"]))
    if report.bad:
        _logger.warning("%s: %s", source.path, report.summary())
    return CorpusFeatures(unpack_features(entry), report, key)


def _build_features(
    corpus: Corpus, source: CorpusConfig, fbank: FbankConfig, progress: Callable[[int, int], None] | None
) -> dict:
    usable, report = check_audio(corpus, source.min_seconds, source.expected_sample_rate, source.strict)
    bad = list(report.bad)
    rows = []
    for done, utterance in enumerate(usable.utterances, start=1):
        try:
            rows.append((utterance.speaker, utterance.key, _utterance_features(utterance, source, fbank)))
        except AudioError as error:  # a header that reads fine can still hide broken data
            bad.append(BadAudio(utterance.key, utterance.path, error.reason, error.detail))
        if progress is not None:
            progress(done, len(usable.utterances))
    final = BadAudioReport(report.checked, tuple(bad))
    if source.strict and final.bad:
        raise CorpusError(f"{corpus.root}: {final.summary()} (strict mode)")
    kept = {key for _, key, _ in rows}
    usable.select(lambda utterance: utterance.key in kept).require_speakers(f"{_selection(source)} with usable audio")
    entry = pack_features(([row] for row in rows), len(rows), None)
    entry["checked"] = final.checked
    entry["bad_audio"] = [[b.key, b.path, b.reason, b.detail] for b in final.bad]
    return entry


def _utterance_features(utterance: CorpusUtterance, source: CorpusConfig, fbank: FbankConfig) -> np.ndarray:
    """Filterbanks of one utterance read, VAD-trimmed and cut as the source says."""
    samples = load_audio(utterance.path, fbank.sample_rate, utterance.segment)
    if source.vad:
        samples = energy_vad(samples, fbank.sample_rate)
    if source.max_seconds is not None:
        samples = samples[: round(source.max_seconds * fbank.sample_rate)]
    if len(samples) < fbank.frame_length_samples:
        raise AudioError(utterance.path, "too short", f"{len(samples)} samples after reading, less than one frame")
    features = utterance_features(samples, fbank).numpy()
    if not np.isfinite(features).all():  # never cache features that would poison every model trained on them
        raise AudioError(utterance.path, "non-finite features", "the filterbank of these samples is not finite")
    return features


def _fingerprint(corpus: Corpus) -> str:
    """Digest of each utterance's identity and its file's size and modification time."""
    digest = hashlib.sha256()
    for utterance in corpus.utterances:
        try:
            status = os.stat(utterance.path)
            stamp = (status.st_size, status.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        segment = utterance.segment
        fields = (utterance.key, utterance.speaker, utterance.path, segment and (segment.start, segment.end), stamp)
        digest.update(repr(fields).encode("utf-8"))
    return digest.hexdigest()[:16]


def _reading_settings(source: CorpusConfig) -> dict:
    """The settings that change which utterances are kept or what their samples are."""
    return {
        "min_seconds": source.min_seconds,
        "max_seconds": source.max_seconds,
        "expected_sample_rate": source.expected_sample_rate,
        "vad": source.vad,
    }


def _selection(source: CorpusConfig) -> str:
    """The selection in words, for errors."""
    if source.speakers == "all":
        return "the corpus"
    return f"the {source.speakers} speakers (test_fraction {source.test_fraction}, split_seed {source.split_seed})"
