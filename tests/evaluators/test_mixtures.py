from pathlib import Path

import numpy as np
import pytest
import soundfile

from evaluators.data.mixture_corpora import (
    corpus_pool,
    read_two_speaker_folder,
    speaker_pool,
    synthetic_pool,
    evaluation_mixtures,
    training_source,
)
from evaluators.data.mixtures import (
    MixtureConfig,
    MixtureError,
    SpeakerPool,
    mix,
    seeded_test_set,
    subset,
    training_batch,
)
from evaluators.data.sources import CorpusConfig
from evaluators.data.synthetic import SyntheticCorpusConfig

AN4_TEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "an4" / "test"
RATE = 8000


def _tone(frequency: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    times = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * times + phase)).astype(np.float32)


def _pool(speakers: int = 4, utterances: int = 3) -> SpeakerPool:
    """Speaker k talks at 200 + 100 k Hz; utterance j lasts 0.5 + 0.1 j seconds."""
    return SpeakerPool(
        RATE,
        {f"s{k}": [_tone(200 + 100 * k, 0.5 + 0.1 * j, phase=j) for j in range(utterances)] for k in range(speakers)},
    )


def _power_db(signal: np.ndarray) -> float:
    return 10 * np.log10(np.mean(signal.astype(np.float64) ** 2))


def test_mix_sets_the_relative_level_and_cuts_to_the_shorter_signal():
    target, interferer = _tone(300, 1.0), _tone(700, 0.6) * 5
    mixture, cut_target = mix(target, interferer, level_db=-4.0)
    assert len(mixture) == len(cut_target) == len(interferer)
    assert _power_db(cut_target) - _power_db(mixture - cut_target) == pytest.approx(-4.0, abs=1e-3)


def test_the_test_set_is_deterministic_and_the_enrollment_is_another_utterance():
    pool = _pool()
    first, again = seeded_test_set(pool, 12, (-5.0, 5.0), seed=3), seeded_test_set(pool, 12, (-5.0, 5.0), seed=3)
    other = seeded_test_set(pool, 12, (-5.0, 5.0), seed=4)
    assert all(np.array_equal(a.mixture, b.mixture) and np.array_equal(a.enrollment, b.enrollment) for a, b in zip(first, again))
    assert not all(np.array_equal(a.mixture, b.mixture) for a, b in zip(first, other))
    for mixture in first:
        utterances = pool.utterances_of(mixture.target_speaker)
        in_mixture = [j for j, u in enumerate(utterances) if np.array_equal(u[: len(mixture.target)], mixture.target)]
        assert in_mixture and not any(np.array_equal(mixture.enrollment, utterances[j]) for j in in_mixture)
        assert any(np.array_equal(mixture.enrollment, u) for u in utterances)
    assert [m.target_speaker for m in first[:4]] == ["s0", "s1", "s2", "s3"]


def test_levels_stay_in_range_and_growing_the_test_set_keeps_its_start():
    pool = _pool()
    small, large = seeded_test_set(pool, 5, (-2.0, 3.0), seed=0), seeded_test_set(pool, 40, (-2.0, 3.0), seed=0)
    assert all(np.array_equal(a.mixture, b.mixture) for a, b in zip(small, large))
    levels = [m.level_db for m in large]
    assert min(levels) >= -2.0 and max(levels) <= 3.0 and max(levels) - min(levels) > 2.0
    for mixture in large:
        measured = _power_db(mixture.target) - _power_db(mixture.mixture - mixture.target)
        assert measured == pytest.approx(mixture.level_db, abs=1e-3)


def test_training_batches_have_fixed_lengths_and_follow_the_generator():
    pool = _pool()
    batch = training_batch(pool, np.random.default_rng(0), 3, 4800, 2400, (-5.0, 5.0))
    assert batch.mixture.shape == batch.target.shape == (3, 4800) and batch.enrollment.shape == (3, 2400)
    again = training_batch(pool, np.random.default_rng(0), 3, 4800, 2400, (-5.0, 5.0))
    assert batch.mixture.equal(again.mixture) and batch.enrollment.equal(again.enrollment)
    fixed = seeded_test_set(pool, 4, (0.0, 0.0), seed=0)
    crops = training_batch(fixed, np.random.default_rng(1), 2, 2000, 1000, (0.0, 0.0))
    assert crops.mixture.shape == (2, 2000)
    assert (crops.mixture - crops.target).abs().sum() > 0


def test_subset_is_seeded_and_keeps_all_when_asked_for_more():
    mixtures = seeded_test_set(_pool(), 10, (-5.0, 5.0), seed=0)
    assert subset(mixtures, 20, seed=0) == mixtures
    picked = subset(mixtures, 4, seed=0)
    assert len(picked) == 4 and picked == subset(mixtures, 4, seed=0)


def test_bad_pools_and_unknown_speakers_are_clear_errors():
    with pytest.raises(MixtureError, match="1 speaker"):
        SpeakerPool(RATE, {"a": [_tone(100, 0.5), _tone(100, 0.6)]})
    with pytest.raises(MixtureError, match="speaker 'b' has 1 utterance"):
        SpeakerPool(RATE, {"a": [_tone(100, 0.5), _tone(100, 0.6)], "b": [_tone(200, 0.5)]})
    with pytest.raises(MixtureError, match="unknown speaker 'nobody'"):
        _pool().enrollment("nobody", np.random.default_rng(0), exclude=0)


def test_mixture_config_errors_name_the_key():
    with pytest.raises(MixtureError, match=r"mixtures.level_db=\[5.0, -5.0\]: low must not exceed high"):
        MixtureConfig(level_db=(5.0, -5.0))
    with pytest.raises(MixtureError, match="mixtures.test_mixtures=0"):
        MixtureConfig(test_mixtures=0)
    with pytest.raises(MixtureError, match="mixtures.segment_seconds=0"):
        MixtureConfig(segment_seconds=0)


def test_the_synthetic_pool_is_cached_and_rendered_at_the_run_rate(tmp_path):
    corpus = SyntheticCorpusConfig(train_speakers=2, test_speakers=2, utterances_per_speaker=2, sample_rate=RATE,
                                   min_seconds=0.3, max_seconds=0.4)  # fmt: skip
    pool = synthetic_pool(corpus, "test", tmp_path)
    assert pool.speakers == ["test-0000", "test-0001"] and len(list(tmp_path.glob("audio-*.pt"))) == 1
    again = synthetic_pool(corpus, "test", tmp_path)
    assert np.array_equal(pool.utterances["test-0001"][1], again.utterances["test-0001"][1])
    assert 0.3 * RATE <= len(pool.utterances["test-0000"][0]) <= 0.4 * RATE
    with pytest.raises(MixtureError, match="synthetic corpus at 8000 Hz: the run's sample rate is 16000 Hz"):
        speaker_pool(corpus, "test", 16000, tmp_path)


def _write(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate)


def _two_speaker_folder(root: Path, lines: str, rate_of_s1: int = RATE) -> Path:
    for index, (low, high) in enumerate([(300, 900), (400, 1100)]):
        name = f"m{index}.wav"
        s1, s2 = _tone(low, 0.5), 0.5 * _tone(high, 0.5)
        _write(root / "mix" / name, s1 + s2)
        _write(root / "s1" / name, s1 if rate_of_s1 == RATE else _tone(low, 1.0), rate_of_s1)
        _write(root / "s2" / name, s2)
        _write(root / "enrol" / f"e{index}.wav", _tone(low, 0.4, phase=1.0))
    (root / "enrollment.txt").write_text(lines)
    return root


def test_a_two_speaker_folder_gives_its_listed_mixtures(tmp_path):
    root = _two_speaker_folder(tmp_path / "tt", "# mixture target enrollment\nm0.wav s1 enrol/e0.wav\nm1.wav s2 enrol/e1.wav\n")
    mixtures = read_two_speaker_folder(root, "enrollment.txt", RATE)
    assert [m.target_speaker for m in mixtures] == ["m0.wav:s1", "m1.wav:s2"]
    np.testing.assert_allclose(mixtures[0].target, _tone(300, 0.5), atol=1e-4)
    np.testing.assert_allclose(mixtures[1].target, 0.5 * _tone(1100, 0.5), atol=1e-4)
    assert mixtures[0].level_db == pytest.approx(_power_db(_tone(300, 0.5)) - _power_db(0.5 * _tone(900, 0.5)), abs=0.01)
    config = MixtureConfig(two_speaker_train=str(root), two_speaker_test=str(root), test_mixtures=1)
    assert len(evaluation_mixtures(config, SyntheticCorpusConfig(), RATE, tmp_path)) == 1
    assert len(training_source(config, SyntheticCorpusConfig(), RATE, tmp_path)) == 2


def test_two_speaker_folder_errors_name_the_file(tmp_path):
    bad_line = _two_speaker_folder(tmp_path / "a", "m0.wav s3 enrol/e0.wav\n")
    with pytest.raises(MixtureError, match=r"enrollment.txt:1: expected '<mixture file> <s1\|s2> <enrollment file>'"):
        read_two_speaker_folder(bad_line, "enrollment.txt", RATE)
    missing = _two_speaker_folder(tmp_path / "b", "m0.wav s1 enrol/nobody.wav\n")
    with pytest.raises(MixtureError, match=r"enrollment.txt:1: .*nobody.wav not found"):
        read_two_speaker_folder(missing, "enrollment.txt", RATE)
    with pytest.raises(MixtureError, match="enrollment list not found"):
        read_two_speaker_folder(missing, "other.txt", RATE)
    mismatch = _two_speaker_folder(tmp_path / "c", "m0.wav s1 enrol/e0.wav\n", rate_of_s1=16000)
    with pytest.raises(MixtureError, match=r"sample-rate mismatch: .*m0.wav at 8000 Hz, .*m0.wav at 16000 Hz"):
        read_two_speaker_folder(mismatch, "enrollment.txt", RATE)
    with pytest.raises(MixtureError, match="expected a mixture folder"):
        read_two_speaker_folder(tmp_path, "enrollment.txt", RATE)


def test_a_folder_per_speaker_corpus_is_resampled_and_pooled(tmp_path):
    for speaker in ("alice", "bob"):
        for index in range(2):
            _write(tmp_path / speaker / f"{index}.flac", _tone(300 + index, 1.2), rate=16000)  # 0.6 s at 16 kHz
    pool = corpus_pool(CorpusConfig(corpus="folder", path=str(tmp_path)), RATE)
    assert pool.speakers == ["alice", "bob"]
    assert len(pool.utterances["bob"][0]) == round(0.6 * RATE)


@pytest.mark.skipif(not AN4_TEST.is_dir(), reason="AN4 real-speech data not present")
def test_real_speech_from_an4_builds_mixtures():
    pool = corpus_pool(CorpusConfig(corpus="folder", path=str(AN4_TEST), max_utterances_per_speaker=3), RATE)
    mixtures = seeded_test_set(pool, 6, (-5.0, 5.0), seed=0)
    assert len(pool.speakers) == 10 and len(mixtures) == 6
    for mixture in mixtures:
        assert len(mixture.mixture) == len(mixture.target) > RATE // 2
        assert _power_db(mixture.target) - _power_db(mixture.mixture - mixture.target) == pytest.approx(mixture.level_db, abs=1e-3)
