"""Decision thresholds: chosen on half of the test speakers, their error rates stated on the other half."""

import json

import numpy as np
import pytest

from search.tasks.base import TaskExportError
from search.tasks.verification_threshold import (
    EER_POINT,
    FALSE_ACCEPT_POINT,
    eer_threshold,
    error_rates,
    false_accept_threshold,
    speaker_halves,
)
from spaces.bundle import CONFIG_FILE, MODEL_CARD_FILE


def _overlapping_trials(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 target scores around 0.6 and 1,600 non-target scores around 0.2: the classes overlap."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0.6, 0.15, 400), rng.normal(0.2, 0.15, 1600)])
    return scores, np.concatenate([np.ones(400, dtype=int), np.zeros(1600, dtype=int)])


def test_the_eer_threshold_balances_false_accepts_and_false_rejects():
    scores, labels = _overlapping_trials()
    threshold = eer_threshold(scores, labels)
    rates = error_rates(scores, labels, threshold)
    assert 0.05 < rates["false_accept"] < 0.15 and abs(rates["false_accept"] - rates["false_reject"]) < 1 / 400 + 1 / 1600
    for other in np.unique(scores):  # no trial score balances the two rates better
        other_rates = error_rates(scores, labels, other)
        assert abs(other_rates["false_accept"] - other_rates["false_reject"]) >= abs(rates["false_accept"] - rates["false_reject"])


def test_separable_trials_get_an_eer_threshold_without_errors():
    scores, labels = np.array([0.1, 0.2, 0.3, 0.7, 0.8]), np.array([0, 0, 0, 1, 1])
    assert eer_threshold(scores, labels) == 0.7
    assert error_rates(scores, labels, 0.7) == {"false_accept": 0.0, "false_reject": 0.0}


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.0])
def test_the_false_accept_threshold_is_the_lowest_within_the_rate(rate):
    scores, labels = _overlapping_trials()
    threshold = false_accept_threshold(scores, labels, rate)
    assert error_rates(scores, labels, threshold)["false_accept"] <= rate
    lower = scores[scores < threshold].max()  # the next score down would accept one non-target too many
    assert error_rates(scores, labels, lower)["false_accept"] > rate


def test_speaker_halves_are_disjoint_seeded_and_cover_every_utterance():
    labels = np.repeat(np.arange(7), 3)
    calibration, held_out = speaker_halves(labels, seed=5)
    assert sorted([*calibration, *held_out]) == list(range(labels.size))
    assert not set(labels[calibration]) & set(labels[held_out])
    assert (len(set(labels[calibration])), len(set(labels[held_out]))) == (3, 4)
    np.testing.assert_array_equal(speaker_halves(labels, seed=5)[0], calibration)
    assert any(not np.array_equal(speaker_halves(labels, seed)[0], calibration) for seed in range(6, 12))


def test_too_few_speakers_to_calibrate_and_check_is_an_export_error():
    with pytest.raises(TaskExportError, match="has 3 speakers: .* needs at least 4"):
        speaker_halves(np.repeat(np.arange(3), 4), seed=0)


def test_the_bundle_records_thresholds_from_one_half_and_rates_on_the_other(bundle):
    decision = json.loads((bundle / CONFIG_FILE).read_text())["decision"]
    calibration, held_out = decision["calibration"], decision["held_out"]
    assert decision["default"] == EER_POINT and set(decision["thresholds"]) == {EER_POINT, FALSE_ACCEPT_POINT}
    # the tiny run's 4 test speakers of 4 utterances: each half's all-pairs trials among 2 speakers
    assert calibration["speakers"] + held_out["speakers"] == 4
    assert (calibration["trials"], calibration["target_trials"]) == (28, 12) == (held_out["trials"], held_out["target_trials"])
    assert calibration["error_rates"][FALSE_ACCEPT_POINT]["false_accept"] == 0.0  # 16 non-targets: 1% allows none
    assert decision["thresholds"][FALSE_ACCEPT_POINT] >= decision["thresholds"][EER_POINT]
    card = (bundle / MODEL_CARD_FILE).read_text()
    for point, words in ((EER_POINT, "EER point (default)"), (FALSE_ACCEPT_POINT, "1% false accepts")):
        rates = held_out["error_rates"][point]
        row = f"| {words} | {decision['thresholds'][point]:.4f} | {100 * rates['false_accept']:.2f}% | {100 * rates['false_reject']:.2f}% |"
        assert row in card
