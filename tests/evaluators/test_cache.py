"""Content-addressed cache: hashing, build-once, corruption recovery, cached feature sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from evaluators.data.cache import cached_tensors, content_hash, load_or_build_features
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.features import FbankConfig

CORPUS = SyntheticCorpusConfig(
    train_speakers=3, test_speakers=2, utterances_per_speaker=3, min_seconds=0.5, max_seconds=0.8
)


class _CountingBuilder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return {"weights": torch.arange(4.0), "names": ["a", "b"], "count": 2}


def test_content_hash_is_stable_and_short() -> None:
    assert content_hash(CORPUS, "train") == content_hash(SyntheticCorpusConfig(**dataclasses.asdict(CORPUS)), "train")
    assert content_hash({"b": 1, "a": 2}) == content_hash({"a": 2, "b": 1})
    assert len(content_hash(CORPUS)) == 16
    assert content_hash("x", 1) == "59402b0471b497c0"  # pinned: caches must survive upgrades


def test_content_hash_changes_with_any_value() -> None:
    base = content_hash(CORPUS, FbankConfig(), "train")
    assert content_hash(dataclasses.replace(CORPUS, seed=1), FbankConfig(), "train") != base
    assert content_hash(CORPUS, FbankConfig(num_mel_bins=80), "train") != base
    assert content_hash(CORPUS, FbankConfig(), "test") != base


def test_content_hash_rejects_unserialisable_parts() -> None:
    with pytest.raises(TypeError, match="cannot content-hash a object"):
        content_hash(object())


def test_second_call_loads_instead_of_building(tmp_path: Path) -> None:
    builder = _CountingBuilder()
    first = cached_tensors(tmp_path, "thing", "abc", builder)
    second = cached_tensors(tmp_path, "thing", "abc", builder)
    assert builder.calls == 1
    assert torch.equal(first["weights"], second["weights"])
    assert second["names"] == ["a", "b"] and second["count"] == 2
    assert [path.name for path in tmp_path.iterdir()] == ["thing-abc.pt"]


def test_different_keys_are_different_entries(tmp_path: Path) -> None:
    builder = _CountingBuilder()
    cached_tensors(tmp_path, "thing", "abc", builder)
    cached_tensors(tmp_path, "thing", "def", builder)
    assert builder.calls == 2


def test_corrupt_entry_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "thing-abc.pt").write_bytes(b"not a torch file")
    builder = _CountingBuilder()
    entry = cached_tensors(tmp_path, "thing", "abc", builder)
    assert builder.calls == 1 and torch.equal(entry["weights"], torch.arange(4.0))
    cached_tensors(tmp_path, "thing", "abc", builder)
    assert builder.calls == 1


def test_failed_build_or_save_leaves_no_file(tmp_path: Path) -> None:
    def failing() -> dict:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cached_tensors(tmp_path, "thing", "abc", failing)
    with pytest.raises(Exception):
        cached_tensors(tmp_path, "thing", "abc", lambda: {"unpicklable": lambda: None})
    assert not any(tmp_path.iterdir())


def test_names_with_path_separators_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key='../x'"):
        cached_tensors(tmp_path, "thing", "../x", _CountingBuilder())


def test_features_are_cached_and_round_trip(tmp_path: Path) -> None:
    built = load_or_build_features(CORPUS, FbankConfig(), "train", tmp_path, )
    assert len(list(tmp_path.glob("features-*.pt"))) == 1
    loaded = load_or_build_features(CORPUS, FbankConfig(), "train", tmp_path, )
    assert loaded.num_speakers == 3 and len(loaded) == 9
    assert loaded.labels == built.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert loaded.utterance_ids == built.utterance_ids and loaded.speaker_ids == built.speaker_ids
    for a, b in zip(built.features, loaded.features):
        assert a.shape[1] == 40 and torch.equal(a, b)


def test_split_and_settings_get_their_own_entries(tmp_path: Path) -> None:
    test = load_or_build_features(CORPUS, FbankConfig(), "test", tmp_path, )
    load_or_build_features(CORPUS, FbankConfig(num_mel_bins=24), "test", tmp_path, )
    assert test.speaker_ids[0] == "test-0000"
    assert len(list(tmp_path.glob("features-*.pt"))) == 2


def test_parallel_build_matches_in_process_build(tmp_path: Path) -> None:
    serial = load_or_build_features(CORPUS, FbankConfig(), "test", tmp_path / "serial", )
    parallel = load_or_build_features(CORPUS, FbankConfig(), "test", tmp_path / "parallel", workers=2)
    assert parallel.utterance_ids == serial.utterance_ids
    assert all(torch.equal(a, b) for a, b in zip(serial.features, parallel.features))


def test_feature_build_reports_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    load_or_build_features(CORPUS, FbankConfig(), "test", tmp_path, progress=lambda *call: calls.append(call))
    assert calls == [(3, 6), (6, 6)]


def test_mismatched_sample_rates_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fbank.sample_rate=8000: must equal data.sample_rate=16000"):
        load_or_build_features(CORPUS, FbankConfig(sample_rate=8000), "train", tmp_path)


def test_unknown_split_is_rejected_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split='dev'"):
        load_or_build_features(CORPUS, FbankConfig(), "dev", tmp_path)
    assert not any(tmp_path.iterdir())


def test_cached_features_pickle_without_sharing_storage(tmp_path):
    import pickle

    from evaluators.data.cache import load_or_build_features
    from evaluators.data.synthetic import SyntheticCorpusConfig
    from evaluators.features import FbankConfig

    corpus = SyntheticCorpusConfig(train_speakers=2, test_speakers=2, utterances_per_speaker=3, min_seconds=0.5, max_seconds=0.6)
    load_or_build_features(corpus, FbankConfig(), "test", tmp_path)
    features = load_or_build_features(corpus, FbankConfig(), "test", tmp_path).features
    one = len(pickle.dumps(features[0]))
    assert len(pickle.dumps(features)) < 1.5 * len(features) * one
