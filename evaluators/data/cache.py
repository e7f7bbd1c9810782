"""Content-addressed on-disk cache for expensive, deterministic preparation steps.

A run's corpus features and teacher are pure functions of their configs, so they are stored
under a hash of those configs: a second run (or a Ray worker on the same disk) with the same
settings loads them in seconds, and any change to a setting makes a new entry instead of
silently reusing a stale one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluators.cache_keys import keyed_fields
from evaluators.data.synthetic import CORPUS_VERSION, SyntheticCorpusConfig, generate_speaker_utterances
from evaluators.features import FbankConfig, FeatureSet, speaker_labels
from evaluators.utterance_features import utterance_features

DEFAULT_CACHE_ROOT = Path("results/cache")
"""Where run configs put the cache unless they say otherwise (relative to the working directory)."""

_logger = logging.getLogger(__name__)


def content_hash(*parts: Any) -> str:
    """Stable 16-hex-digit digest of JSON-serialisable parts; dataclasses count as their fields.

    Keys are sorted, so the digest depends on values only, not on construction order.

    Raises:
        TypeError: If a part is neither JSON-serialisable nor a dataclass instance.
    """
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (a checkpoint's identity in cache keys), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_tensors(
    root: str | os.PathLike[str], kind: str, key: str, build: Callable[[], dict]
) -> dict:
    """Load `root/<kind>-<key>.pt`, or build, store and return it.

    The file is written to a temporary name and renamed into place, so concurrent builders and
    interrupted runs never leave a half-written entry. An entry that fails to load is logged and
    rebuilt rather than failing the run.

    Args:
        root: Cache directory (created when missing).
        kind: What is cached ("features", "teacher"); part of the file name.
        key: Usually a `content_hash` of everything the entry depends on.
        build: Produces the entry: a dict of tensors, strings, numbers and lists of them
            (what `torch.load(weights_only=True)` accepts).
    """
    for name, value in (("kind", kind), ("key", key)):
        if not value or os.sep in value or "/" in value:
            raise ValueError(f"cache {name}={value!r}: must be a non-empty name without path separators")
    directory = Path(root)
    path = directory / f"{kind}-{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # any unreadable entry is equally worthless: rebuild it
            _logger.warning("rebuilding unreadable cache entry %s (%s)", path, error)
    entry = build()
    directory.mkdir(parents=True, exist_ok=True)
    # A unique name per writer (not mkstemp, whose 0600 mode would hide a shared cache).
    temporary = directory / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        torch.save(entry, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return entry


def load_or_build_features(
    corpus: SyntheticCorpusConfig,
    fbank: FbankConfig,
    split: str,
    cache_root: str | os.PathLike[str] = DEFAULT_CACHE_ROOT,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> FeatureSet:
    """Filterbank features of one split of the synthetic corpus, cached by content hash.

    On a cache miss the split is rendered and featurised speaker by speaker, so its audio
    (hundreds of MB for the default corpus) never exists all at once. The result does not
    depend on `workers`.

    Args:
        corpus: Corpus settings.
        fbank: Filterbank settings; its sample rate must equal the corpus's.
        split: "train" or "test".
        cache_root: Cache directory.
        progress: Called with (done, total) utterances while features are being built.
        workers: Processes that build a missing entry; 1 builds in-process. More pays off only
            with truly idle cores: each spawned worker first spends seconds importing torch.
    """
    if fbank.sample_rate != corpus.sample_rate:
        raise ValueError(f"fbank.sample_rate={fbank.sample_rate}: must equal data.sample_rate={corpus.sample_rate}")
    if workers < 1:
        raise ValueError(f"workers={workers}: must be >= 1")
    num_speakers = corpus.num_speakers(split)  # also validates the split name
    key = content_hash("synthetic", CORPUS_VERSION, corpus, fbank, split)
    entry = cached_tensors(
        cache_root, "features", key, lambda: _build_features(corpus, fbank, split, progress, min(workers, num_speakers))
    )
    return unpack_features(entry)


def _build_features(
    corpus: SyntheticCorpusConfig,
    fbank: FbankConfig,
    split: str,
    progress: Callable[[int, int], None] | None,
    workers: int,
) -> dict:
    task = functools.partial(_speaker_features, corpus, fbank, split)
    speakers = range(corpus.num_speakers(split))
    if workers == 1:
        return pack_features(map(task, speakers), len(speakers) * corpus.utterances_per_speaker, progress)
    # "spawn", not "fork": forking a process that may hold torch/OpenMP or Ray threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return pack_features(pool.map(task, speakers), len(speakers) * corpus.utterances_per_speaker, progress)


def _speaker_features(
    corpus: SyntheticCorpusConfig, fbank: FbankConfig, split: str, speaker_index: int
) -> list[tuple[str, str, np.ndarray]]:
    """(speaker id, utterance id, features) of one speaker; numpy, because it crosses processes."""
    return [
        (utterance.speaker_id, utterance.utterance_id, utterance_features(utterance.audio, fbank).numpy())
        for utterance in generate_speaker_utterances(corpus, split, speaker_index)
    ]


def pack_features(
    speakers: Iterable[list[tuple[str, str, np.ndarray]]],
    total: int,
    progress: Callable[[int, int], None] | None,
) -> dict:
    """A cache entry of (speaker id, utterance id, features) rows, grouped in any way (progress is per group).

    One concatenated tensor plus lengths: far faster to save and load than many small tensors.
    """
    rows: list[tuple[str, str, np.ndarray]] = []
    for speaker_rows in speakers:
        rows.extend(speaker_rows)
        if progress is not None:
            progress(len(rows), total)
    speaker_ids = [speaker_id for speaker_id, _, _ in rows]
    return {
        "features": torch.from_numpy(np.concatenate([features for _, _, features in rows])),
        "lengths": torch.tensor([len(features) for _, _, features in rows], dtype=torch.int64),
        "labels": torch.tensor(speaker_labels(speaker_ids), dtype=torch.int64),
        "speaker_ids": speaker_ids,
        "utterance_ids": [utterance_id for _, utterance_id, _ in rows],
    }


def unpack_features(entry: dict) -> FeatureSet:
    """The `FeatureSet` of an entry made by `pack_features`."""
    # Clone each slice: a view pickles its whole storage, so sending N views to a Ray worker
    # would copy the full concatenated tensor N times.
    return FeatureSet(
        features=[chunk.clone() for chunk in torch.split(entry["features"], entry["lengths"].tolist())],
        labels=entry["labels"].tolist(),
        speaker_ids=list(entry["speaker_ids"]),
        utterance_ids=list(entry["utterance_ids"]),
    )


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return keyed_fields(value)
    raise TypeError(f"cannot content-hash a {type(value).__name__}: {value!r}")
