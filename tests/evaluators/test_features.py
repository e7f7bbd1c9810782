"""Log-mel filterbanks, random crops and feature sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluators.data.synthetic import SyntheticCorpusConfig, Utterance, generate_split
from evaluators.features import (
    FbankConfig,
    FeatureSet,
    compute_fbank,
    extract_features,
    mean_normalize,
    random_crop,
    speaker_labels,
)

FBANK = FbankConfig()


def _tone(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    times = np.arange(int(seconds * sample_rate)) / sample_rate
    noise = np.random.default_rng(0).normal(0.0, 0.01, len(times))
    return (0.3 * np.sin(2 * np.pi * 440.0 * times) + noise).astype(np.float32)


def test_fbank_has_one_row_per_frame_shift() -> None:
    features = compute_fbank(_tone(1.0), FBANK)
    assert features.dtype == torch.float32
    assert features.shape == (1 + (16000 - 400) // 160, 40)  # 98 frames: ~duration / 10 ms


def test_fbank_respects_bins_and_frame_settings() -> None:
    config = FbankConfig(num_mel_bins=24, frame_length_ms=20.0, frame_shift_ms=20.0, sample_rate=8000)
    features = compute_fbank(_tone(1.0, 8000), config)
    assert features.shape == (1 + (8000 - 160) // 160, 24)


def test_fbank_is_mean_normalised_over_time() -> None:
    features = compute_fbank(_tone(1.5), FBANK)
    assert torch.allclose(features.mean(dim=0), torch.zeros(40), atol=1e-4)
    assert features.std() > 0.1


def test_fbank_follows_the_spectrum_over_time() -> None:
    times = np.arange(16000) / 16000
    audio = 0.3 * np.where(times < 0.5, np.sin(2 * np.pi * 300.0 * times), np.sin(2 * np.pi * 3000.0 * times))
    features = compute_fbank(audio.astype(np.float32), FBANK)
    low_tone, high_tone = features[:40].mean(dim=0), features[-40:].mean(dim=0)
    assert low_tone.argmax() < 15 < high_tone.argmax()


def test_fbank_rejects_audio_shorter_than_one_frame() -> None:
    with pytest.raises(ValueError, match=r"audio has 399 samples .* need at least 400"):
        compute_fbank(np.zeros(399, dtype=np.float32), FBANK)
    assert compute_fbank(np.zeros(400, dtype=np.float32), FBANK).shape == (1, 40)


def test_fbank_rejects_multichannel_audio() -> None:
    with pytest.raises(ValueError, match="expected mono"):
        compute_fbank(np.zeros((2, 16000), dtype=np.float32), FBANK)


def test_fbank_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="fbank.frame_shift_ms=30.0"):
        FbankConfig(frame_shift_ms=30.0)
    with pytest.raises(ValueError, match="fbank.num_mel_bins=0"):
        FbankConfig(num_mel_bins=0)


def test_mean_normalize_subtracts_the_mean_over_time() -> None:
    features = torch.tensor([[1.0, 10.0], [3.0, 20.0]])
    assert torch.equal(mean_normalize(features), torch.tensor([[-1.0, -5.0], [1.0, 5.0]]))


def test_random_crop_of_long_input_is_a_contiguous_window() -> None:
    features = torch.arange(100.0).unsqueeze(1).repeat(1, 3)
    crop = random_crop(features, 30, torch.Generator().manual_seed(0))
    assert crop.shape == (30, 3)
    assert torch.equal(crop[:, 0], torch.arange(crop[0, 0].item(), crop[0, 0].item() + 30))


def test_random_crop_of_short_input_repeats_it() -> None:
    features = torch.arange(7.0).unsqueeze(1)
    crop = random_crop(features, 20, torch.Generator().manual_seed(0))
    assert crop.shape == (20, 1)
    assert torch.equal(crop[:, 0] % 7, (crop[0, 0] + torch.arange(20.0)) % 7)


def test_random_crop_is_reproducible_and_random() -> None:
    features = torch.randn(200, 4)
    first = random_crop(features, 50, torch.Generator().manual_seed(3))
    again = random_crop(features, 50, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(3)
    starts = {random_crop(features, 50, generator)[0, 0].item() for _ in range(10)}
    assert len(starts) > 1


def test_random_crop_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError, match="frames=0"):
        random_crop(torch.zeros(5, 2), 0, torch.Generator())
    with pytest.raises(ValueError, match="0 frames"):
        random_crop(torch.zeros(0, 2), 5, torch.Generator())


def test_extract_features_labels_speakers_and_reports_progress() -> None:
    corpus = SyntheticCorpusConfig(
        train_speakers=3, test_speakers=2, utterances_per_speaker=2, min_seconds=0.5, max_seconds=0.6
    )
    utterances = generate_split(corpus, "train")
    calls: list[tuple[int, int]] = []
    features = extract_features(utterances, FBANK, progress=lambda done, total: calls.append((done, total)))
    assert len(features) == 6 and features.num_speakers == 3
    assert features.labels == [0, 0, 1, 1, 2, 2]
    assert features.utterance_ids[1] == "train-0000-001"
    assert all(f.shape[1] == 40 and 48 <= f.shape[0] <= 59 for f in features.features)
    assert calls[-1] == (6, 6) and len(calls) == 6


def test_speaker_labels_do_not_depend_on_order() -> None:
    assert speaker_labels(["b", "a", "b", "c"]) == [1, 0, 1, 2]


def test_feature_set_rejects_mismatched_fields() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        FeatureSet(features=[torch.zeros(1, 1)], labels=[], speaker_ids=["a"], utterance_ids=["a-0"])


def test_extract_features_accepts_any_utterance_like_sequence() -> None:
    utterance = Utterance("x-0000-000", "x-0000", _tone(0.5))
    assert extract_features([utterance], FBANK).features[0].shape == (48, 40)
