import logging
import os

import numpy as np
import pytest
import soundfile

from evaluators.data import corpus_features
from evaluators.data.corpora import CorpusError
from evaluators.data.corpus_features import load_or_build_corpus_features, select_utterances
from evaluators.data.source_features import load_eval_set, load_training_set
from evaluators.data.sources import CorpusConfig, EvalSetConfig
from evaluators.data.trial_lists import Trial, TrialListError, write_trial_list
from evaluators.features import FbankConfig

FBANK = FbankConfig(num_mel_bins=24)
ONE_SECOND_FRAMES = 1 + (16000 - 400) // 160


@pytest.fixture
def corpus_root(tmp_path, write_audio):
    root = tmp_path / "corpus"
    write_audio(root / "alice" / "a1.flac")
    write_audio(root / "alice" / "a2.wav", channels=2)
    write_audio(root / "bob" / "b1.wav", rate=22050)
    write_audio(root / "bob" / "b2.ogg")
    write_audio(root / "carol" / "c1.flac")
    write_audio(root / "carol" / "c2.wav", seconds=0.2)  # too short
    return root


def test_every_format_becomes_features_at_the_model_rate(tmp_path, corpus_root, caplog):
    source = CorpusConfig("folder", str(corpus_root))
    with caplog.at_level(logging.WARNING):
        result = load_or_build_corpus_features(source, FBANK, tmp_path / "cache")
    features = result.features
    assert features.utterance_ids == ["alice/a1.flac", "alice/a2.wav", "bob/b1.wav", "bob/b2.ogg", "carol/c1.flac"]
    assert features.speaker_ids == ["alice", "alice", "bob", "bob", "carol"] and features.labels == [0, 0, 1, 1, 2]
    assert [f.shape for f in features.features] == [(ONE_SECOND_FRAMES, 24)] * 5
    assert [(b.key, b.reason) for b in result.bad_audio.bad] == [("carol/c2.wav", "too short")]
    assert "1 of 6 files skipped (1 too short)" in caplog.text and "c2.wav" in caplog.text


def test_cache_is_reused_until_a_file_changes(tmp_path, corpus_root, monkeypatch, caplog):
    source = CorpusConfig("folder", str(corpus_root))
    first = load_or_build_corpus_features(source, FBANK, tmp_path / "cache")

    def unreadable(*args, **kwargs):
        raise AssertionError("audio read although the cache is fresh")

    monkeypatch.setattr(corpus_features, "load_audio", unreadable)
    with caplog.at_level(logging.WARNING):
        again = load_or_build_corpus_features(source, FBANK, tmp_path / "cache")
    assert again.key == first.key and again.bad_audio == first.bad_audio  # the report survives the cache
    assert "c2.wav" in caplog.text
    os.utime(corpus_root / "bob" / "b2.ogg", ns=(1, 1))
    with pytest.raises(AssertionError, match="audio read"):
        load_or_build_corpus_features(source, FBANK, tmp_path / "cache")
    monkeypatch.undo()
    changed = load_or_build_corpus_features(source, FBANK, tmp_path / "cache")
    assert changed.key != first.key
    vad = load_or_build_corpus_features(CorpusConfig("folder", str(corpus_root), vad=True), FBANK, tmp_path / "cache")
    assert vad.key != changed.key


def test_a_float_wav_with_nan_samples_is_skipped_as_bad_audio_not_a_crash(tmp_path, corpus_root):
    samples = np.full(16000, 0.1, dtype=np.float32)
    samples[500] = np.nan
    soundfile.write(corpus_root / "bob" / "b3.wav", samples, 16000, subtype="FLOAT")
    result = load_or_build_corpus_features(CorpusConfig("folder", str(corpus_root)), FBANK, tmp_path / "cache")
    assert ("bob/b3.wav", "non-finite samples") in [(b.key, b.reason) for b in result.bad_audio.bad]
    assert all(bool(np.isfinite(features).all()) for features in result.features.features)
    (corpus_root / "carol" / "c2.wav").unlink()  # strict mode stops at the first bad file: leave only the NaN one
    with pytest.raises(CorpusError, match=r"non-finite samples.*b3.wav.*strict"):
        load_or_build_corpus_features(CorpusConfig("folder", str(corpus_root), strict=True), FBANK, tmp_path / "strict")


def test_strict_mode_and_too_few_usable_speakers_are_errors(tmp_path, corpus_root, write_audio):
    with pytest.raises(CorpusError, match=r"1 of 6 files skipped \(1 too short\).*c2.wav.*strict"):
        load_or_build_corpus_features(CorpusConfig("folder", str(corpus_root), strict=True), FBANK, tmp_path)
    with pytest.raises(CorpusError, match=r"the test speakers .* has 1 speaker\(s\)"):
        select_utterances(CorpusConfig("folder", str(corpus_root), speakers="test", test_fraction=0.34))
    sparse = tmp_path / "sparse"
    write_audio(sparse / "dan" / "ok.wav")
    write_audio(sparse / "eve" / "short.wav", seconds=0.1)
    with pytest.raises(CorpusError, match=r"with usable audio has 1 speaker\(s\)"):
        load_or_build_corpus_features(CorpusConfig("folder", str(sparse)), FBANK, tmp_path)


def test_max_seconds_cuts_long_utterances(tmp_path, corpus_root):
    result = load_or_build_corpus_features(CorpusConfig("folder", str(corpus_root), max_seconds=0.5), FBANK, tmp_path)
    assert {f.shape[0] for f in result.features.features} == {1 + (8000 - 400) // 160}


def test_eval_set_without_a_list_scores_a_generated_one(tmp_path, corpus_root):
    eval_set = load_eval_set(EvalSetConfig("mine", CorpusConfig("folder", str(corpus_root))), FBANK, tmp_path, 1000, 0)
    assert eval_set.name == "mine" and len(eval_set.features) == 5
    assert len(eval_set.trials) == 10 and eval_set.trials.labels.sum() == 2


def test_eval_set_with_an_official_list_reads_only_the_named_files(tmp_path, corpus_root):
    trials_path = tmp_path / "trials.txt"
    source = CorpusConfig("folder", str(corpus_root), trials=str(trials_path))

    def evaluate_on(*pairs):
        trials = [Trial(enrol.split("/")[0] == test.split("/")[0], enrol, test) for enrol, test in pairs]
        write_trial_list(trials_path, trials)
        return load_eval_set(EvalSetConfig("listed", source), FBANK, tmp_path, 1000, 0)

    eval_set = evaluate_on(("alice/a1.flac", "alice/a2.wav"), ("alice/a1.flac", "bob/b2.ogg"))
    assert len(eval_set.features) == 3 and eval_set.trials.labels.tolist() == [1, 0]
    missing = r"trials.txt: names 1 file\(s\) missing from the evaluation set: alice/a3.wav"
    with pytest.raises(TrialListError, match=missing):
        evaluate_on(("alice/a1.flac", "alice/a3.wav"), ("alice/a1.flac", "bob/b2.ogg"))
    with pytest.raises(TrialListError, match=r"skipped as bad audio.*carol/c2.wav"):
        evaluate_on(("carol/c1.flac", "carol/c2.wav"), ("alice/a1.flac", "carol/c1.flac"))


def test_training_set_identity_is_the_corpus_cache_key(tmp_path, corpus_root):
    source = CorpusConfig("folder", str(corpus_root))
    training = load_training_set(source, FBANK, tmp_path)
    assert training.identity == load_or_build_corpus_features(source, FBANK, tmp_path).key
    assert training.features.num_speakers == 3
