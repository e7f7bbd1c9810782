"""The synthetic speaker corpus: deterministic, valid audio, speakers that differ."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from evaluators.data.synthetic import SyntheticCorpusConfig, Utterance, generate_speaker_utterances, generate_split

TINY = SyntheticCorpusConfig(
    train_speakers=3, test_speakers=3, utterances_per_speaker=3, min_seconds=0.5, max_seconds=1.0
)


def _audio(utterances: list[Utterance]) -> list[np.ndarray]:
    return [utterance.audio for utterance in utterances]


def test_same_seed_renders_identical_audio() -> None:
    first, second = generate_split(TINY, "train"), generate_split(TINY, "train")
    assert [u.utterance_id for u in first] == [u.utterance_id for u in second]
    for a, b in zip(_audio(first), _audio(second)):
        np.testing.assert_array_equal(a, b)


def test_different_seed_renders_different_audio() -> None:
    other = dataclasses.replace(TINY, seed=1)
    first = generate_speaker_utterances(TINY, "train", 0)[0].audio
    second = generate_speaker_utterances(other, "train", 0)[0].audio
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_test_split_does_not_depend_on_train_size() -> None:
    bigger = dataclasses.replace(TINY, train_speakers=5)
    for a, b in zip(_audio(generate_split(TINY, "test")), _audio(generate_split(bigger, "test"))):
        np.testing.assert_array_equal(a, b)


def test_speaker_does_not_depend_on_utterance_count() -> None:
    more = dataclasses.replace(TINY, utterances_per_speaker=5)
    fewer_audio = _audio(generate_speaker_utterances(TINY, "train", 1))
    more_audio = _audio(generate_speaker_utterances(more, "train", 1))[:3]
    for a, b in zip(fewer_audio, more_audio):
        np.testing.assert_array_equal(a, b)


def test_splits_have_disjoint_speakers_and_distinct_audio() -> None:
    train, test = generate_split(TINY, "train"), generate_split(TINY, "test")
    assert not {u.speaker_id for u in train} & {u.speaker_id for u in test}
    assert not np.array_equal(train[0].audio, test[0].audio)


def test_ids_follow_the_documented_format() -> None:
    utterances = generate_split(TINY, "train")
    assert [u.speaker_id for u in utterances[:4]] == ["train-0000"] * 3 + ["train-0001"]
    assert utterances[4].utterance_id == "train-0001-001"
    assert len(utterances) == TINY.train_speakers * TINY.utterances_per_speaker


def test_audio_is_finite_mono_float32_within_duration_and_peak_normalised() -> None:
    for utterance in generate_split(TINY, "test"):
        audio = utterance.audio
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.isfinite(audio).all()
        seconds = len(audio) / TINY.sample_rate
        assert TINY.min_seconds - 1e-3 <= seconds <= TINY.max_seconds + 1e-3
        assert np.max(np.abs(audio)) == pytest.approx(0.5, rel=1e-3)


def test_other_sample_rates_render() -> None:
    config = dataclasses.replace(TINY, sample_rate=8000, utterances_per_speaker=2)
    audio = generate_speaker_utterances(config, "train", 0)[0].audio
    assert np.isfinite(audio).all() and len(audio) >= 0.5 * 8000 - 1


def _median_pitch_hz(audio: np.ndarray, sample_rate: int) -> float:
    """Autocorrelation pitch of the loudest 40 ms frames (a crude but robust estimate)."""
    frame = int(0.04 * sample_rate)
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame).astype(np.float64)
    loud = frames[np.argsort(np.sum(frames**2, axis=1))[-len(frames) // 3 :]]
    spectrum = np.fft.rfft(loud - loud.mean(axis=1, keepdims=True), 2 * frame, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)
    low, high = sample_rate // 400, sample_rate // 60
    lags = low + np.argmax(autocorrelation[:, low:high], axis=1)
    return float(np.median(sample_rate / lags))


def test_pitch_varies_more_between_speakers_than_within() -> None:
    config = SyntheticCorpusConfig(
        train_speakers=8,
        test_speakers=2,
        utterances_per_speaker=4,
        min_seconds=1.0,
        max_seconds=1.5,
        snr_db=(30.0, 30.0),
    )
    utterances = generate_split(config, "train")
    log_pitch = np.log([_median_pitch_hz(u.audio, config.sample_rate) for u in utterances]).reshape(8, 4)
    within = np.mean(np.var(log_pitch, axis=1, ddof=1))
    between = np.var(np.mean(log_pitch, axis=1), ddof=1)
    assert between > 2.0 * within


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"test_speakers": 1}, "data.test_speakers=1: need at least 2 speakers"),
        ({"train_speakers": 0}, "data.train_speakers=0"),
        ({"utterances_per_speaker": 1}, "data.utterances_per_speaker=1"),
        ({"min_seconds": 3.0, "max_seconds": 2.0}, "data.min_seconds=3.0: must not exceed data.max_seconds=2.0"),
        ({"min_seconds": 0.05}, "data.min_seconds=0.05: need at least 0.1 s"),
        ({"sample_rate": 4000}, "data.sample_rate=4000"),
        ({"snr_db": (30.0, 5.0)}, "data.snr_db=(30.0, 5.0)"),
        ({"snr_db": (5.0,)}, "data.snr_db"),
        ({"formant_jitter": -0.1}, "data.formant_jitter=-0.1"),
        ({"seed": -1}, "data.seed=-1"),
        ({"train_speakers": 2.5}, "data.train_speakers=2.5"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SyntheticCorpusConfig(**overrides)


def test_yaml_style_values_are_normalised() -> None:
    config = SyntheticCorpusConfig(snr_db=[5, 30], min_seconds=1, max_seconds=2)  # type: ignore[arg-type]
    assert config.snr_db == (5.0, 30.0) and isinstance(config.min_seconds, float)
    assert config == SyntheticCorpusConfig(snr_db=(5.0, 30.0), min_seconds=1.0, max_seconds=2.0)


def test_unknown_split_and_out_of_range_speaker_are_rejected() -> None:
    with pytest.raises(ValueError, match="split='dev'"):
        generate_split(TINY, "dev")
    with pytest.raises(ValueError, match="speaker_index=3"):
        generate_speaker_utterances(TINY, "train", 3)
