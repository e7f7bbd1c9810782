import numpy as np
import pytest

from evaluators.metrics import (
    VerificationMetrics,
    all_pair_trials,
    bootstrap_eer_interval,
    bootstrap_mean_eer_interval,
    cosine_score_matrix,
    equal_error_rate,
    minimum_dcf,
    paired_eer_difference_interval,
    paired_mean_eer_difference_interval,
    verification_metrics,
)

# 4 target and 4 non-target trials; the ROC passes exactly through FNR = FPR = 0.25.
HAND_SCORES = [0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1, 0.0]
HAND_LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def test_eer_is_zero_for_perfectly_separated_scores():
    assert equal_error_rate([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0


def test_eer_hand_case_crossing_on_a_roc_point():
    assert equal_error_rate(HAND_SCORES, HAND_LABELS) == pytest.approx(0.25)


def test_eer_interpolates_between_bracketing_roc_points():
    # (FPR, FNR) goes (0, 1/3) -> (1/2, 1/3) when the 0.5 non-target is accepted:
    # the crossing lies two thirds of the way along that segment, at 1/3.
    scores = [0.9, 0.8, 0.4, 0.5, 0.1]
    labels = [1, 1, 1, 0, 0]
    assert equal_error_rate(scores, labels) == pytest.approx(1 / 3)


def test_eer_is_one_for_reversed_scores():
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_eer_accepts_boolean_labels():
    assert equal_error_rate(HAND_SCORES, np.array(HAND_LABELS, dtype=bool)) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "2 of 2 trials are targets"),
        ([0.1, 0.2], [0, 0], "0 of 2 trials are targets"),
        ([], [], "no trials"),
        ([0.1, 0.2, 0.3], [1, 0], "differ in length"),
        ([0.1, float("nan")], [1, 0], "non-finite"),
        ([0.1, float("inf")], [1, 0], "non-finite"),
        ([0.1, 0.2], [1, 2], "0/1"),
    ],
)
def test_invalid_trials_raise_naming_the_problem(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        equal_error_rate(scores, labels)
    with pytest.raises(ValueError, match=message):
        minimum_dcf(scores, labels)


def test_min_dcf_hand_case():
    # With p_target = 0.5 the normalised cost is FNR + FPR, smallest (0.5) at e.g. (0.25, 0.25).
    assert minimum_dcf(HAND_SCORES, HAND_LABELS, p_target=0.5) == pytest.approx(0.5)
    # With p_target = 0.01 it is FNR + 99 FPR, smallest (0.5) before the first false alarm.
    assert minimum_dcf(HAND_SCORES, HAND_LABELS) == pytest.approx(0.5)


def test_min_dcf_is_zero_for_perfect_separation():
    assert minimum_dcf([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_min_dcf_lies_between_zero_and_one(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=200)
    labels = rng.integers(0, 2, size=200)
    labels[:2] = [0, 1]
    for p_target in (0.01, 0.5, 0.9):
        assert 0.0 <= minimum_dcf(scores, labels, p_target=p_target) <= 1.0


def test_min_dcf_is_one_for_reversed_scores():
    assert minimum_dcf([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_min_dcf_rejects_invalid_cost_parameters():
    with pytest.raises(ValueError, match="p_target"):
        minimum_dcf(HAND_SCORES, HAND_LABELS, p_target=1.0)
    with pytest.raises(ValueError, match="c_miss"):
        minimum_dcf(HAND_SCORES, HAND_LABELS, c_miss=0.0)


def test_cosine_score_matrix_matches_normalised_dot_products():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    scores = cosine_score_matrix(embeddings)
    assert np.allclose(np.diag(scores), 1.0)
    assert scores[0, 1] == pytest.approx(0.0)
    assert scores[0, 2] == pytest.approx(1 / np.sqrt(2))


def test_cosine_score_matrix_rejects_zero_rows_and_bad_shapes():
    with pytest.raises(ValueError, match="zero norm at rows \\[1\\]"):
        cosine_score_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="2-D"):
        cosine_score_matrix(np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        cosine_score_matrix(np.array([[1.0, np.nan]]))


def test_all_pair_trials_counts_pairs_and_targets():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(6, 4))
    speakers = ["a", "a", "a", "b", "b", "c"]
    scores, labels = all_pair_trials(embeddings, speakers)
    assert scores.shape == labels.shape == (6 * 5 // 2,)
    assert labels.sum() == 3 + 1
    matrix = cosine_score_matrix(embeddings)
    assert scores[0] == pytest.approx(matrix[0, 1])
    assert scores[-1] == pytest.approx(matrix[4, 5])


def _clustered_embeddings(speakers: int, per_speaker: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(speakers, 16))
    labels = np.repeat(np.arange(speakers), per_speaker)
    return centres[labels] + noise * rng.normal(size=(labels.size, 16)), labels


def test_max_trials_keeps_all_targets_when_they_fit():
    embeddings, speakers = _clustered_embeddings(4, 5, noise=0.5)
    all_scores, all_labels = all_pair_trials(embeddings, speakers)
    assert all_labels.size == 190 and all_labels.sum() == 40
    scores, labels = all_pair_trials(embeddings, speakers, max_trials=100, seed=3)
    assert labels.size == 100 and labels.sum() == 40
    assert set(scores[labels == 1]) == set(all_scores[all_labels == 1])
    repeat_scores, _ = all_pair_trials(embeddings, speakers, max_trials=100, seed=3)
    assert np.array_equal(scores, repeat_scores)
    other_scores, _ = all_pair_trials(embeddings, speakers, max_trials=100, seed=4)
    assert not np.array_equal(scores, other_scores)


def test_max_trials_splits_budget_when_targets_do_not_fit():
    embeddings, speakers = _clustered_embeddings(4, 5, noise=0.5)
    _, labels = all_pair_trials(embeddings, speakers, max_trials=50)
    assert labels.size == 50 and labels.sum() == 25


def test_max_trials_above_pair_count_keeps_everything():
    embeddings, speakers = _clustered_embeddings(4, 5, noise=0.5)
    _, labels = all_pair_trials(embeddings, speakers, max_trials=1000)
    assert labels.size == 190


def test_all_pair_trials_rejects_bad_inputs():
    embeddings = np.eye(3)
    with pytest.raises(ValueError, match="speaker_labels"):
        all_pair_trials(embeddings, [0, 1])
    with pytest.raises(ValueError, match="at least 2 utterances"):
        all_pair_trials(np.ones((1, 3)), [0])
    with pytest.raises(ValueError, match="max_trials"):
        all_pair_trials(embeddings, [0, 0, 1], max_trials=1)


def test_verification_metrics_on_separated_clusters():
    embeddings, speakers = _clustered_embeddings(5, 4, noise=0.01)
    metrics = verification_metrics(embeddings, speakers)
    assert metrics == VerificationMetrics(eer=0.0, min_dcf=0.0, num_trials=190, num_target_trials=30)


def test_verification_metrics_respects_max_trials():
    embeddings, speakers = _clustered_embeddings(5, 4, noise=1.0)
    metrics = verification_metrics(embeddings, speakers, max_trials=80)
    assert metrics.num_trials == 80 and metrics.num_target_trials == 30
    assert 0.0 < metrics.eer < 0.5 and 0.0 < metrics.min_dcf <= 1.0


def test_bootstrap_interval_brackets_the_eer_and_is_reproducible():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], [100, 400])
    scores = rng.normal(size=500) + 1.5 * labels
    low, high = bootstrap_eer_interval(scores, labels, n_boot=100, seed=1)
    assert low <= equal_error_rate(scores, labels) <= high
    assert 0.0 < low < high < 0.5
    assert (low, high) == bootstrap_eer_interval(scores, labels, n_boot=100, seed=1)


def test_bootstrap_interval_is_zero_for_perfect_separation():
    assert bootstrap_eer_interval([0.9, 0.8, 0.1], [1, 1, 0], n_boot=20) == (0.0, 0.0)


def _two_systems(separation_first: float, separation_second: float, seed: int = 0):
    """Scores of two systems on the same 100 target and 400 non-target trials, sharing each trial's difficulty."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 0], [100, 400])
    difficulty = rng.normal(size=500)
    own = rng.normal(scale=0.3, size=(2, 500))
    return difficulty + own[0] + separation_first * labels, difficulty + own[1] + separation_second * labels, labels


def test_paired_interval_of_a_system_against_itself_is_exactly_zero():
    scores, _, labels = _two_systems(1.5, 1.5)
    assert paired_eer_difference_interval(scores, scores, labels, n_boot=50) == (0.0, 0.0)


def test_paired_interval_excludes_zero_for_a_clearly_better_system_and_flips_with_the_order():
    better, worse, labels = _two_systems(3.0, 1.0)
    low, high = paired_eer_difference_interval(better, worse, labels, n_boot=100, seed=2)
    assert low <= equal_error_rate(better, labels) - equal_error_rate(worse, labels) <= high
    assert high < 0.0
    flipped = paired_eer_difference_interval(worse, better, labels, n_boot=100, seed=2)
    assert flipped == pytest.approx((-high, -low))


def test_paired_interval_of_equal_systems_contains_zero_and_is_narrower_than_unpaired_intervals():
    first, second, labels = _two_systems(1.5, 1.5, seed=4)
    low, high = paired_eer_difference_interval(first, second, labels, n_boot=100, seed=1)
    assert low < 0.0 < high
    first_low, first_high = bootstrap_eer_interval(first, labels, n_boot=100, seed=1)
    assert high - low < first_high - first_low  # the shared difficulty cancels in the difference


def test_paired_interval_rejects_systems_scored_on_different_trials():
    with pytest.raises(ValueError, match="differ in length"):
        paired_eer_difference_interval(HAND_SCORES, HAND_SCORES[:-1], HAND_LABELS)
    with pytest.raises(ValueError, match="n_boot"):
        paired_eer_difference_interval(HAND_SCORES, HAND_SCORES, HAND_LABELS, n_boot=0)


def test_bootstrap_interval_rejects_bad_parameters():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_eer_interval(HAND_SCORES, HAND_LABELS, n_boot=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_eer_interval(HAND_SCORES, HAND_LABELS, confidence=1.0)


def test_mean_interval_of_identical_runs_is_the_single_run_interval():
    scores, _, labels = _two_systems(1.5, 1.5)
    single = bootstrap_eer_interval(scores, labels, n_boot=60, seed=3)
    assert bootstrap_mean_eer_interval([scores, scores, scores], labels, n_boot=60, seed=3) == single


def test_mean_interval_lies_between_the_runs_intervals_and_brackets_the_mean_eer():
    better, worse, labels = _two_systems(3.0, 1.0)
    low, high = bootstrap_mean_eer_interval([better, worse], labels, n_boot=100, seed=1)
    mean = (equal_error_rate(better, labels) + equal_error_rate(worse, labels)) / 2
    assert low <= mean <= high
    better_low, _ = bootstrap_eer_interval(better, labels, n_boot=100, seed=1)
    _, worse_high = bootstrap_eer_interval(worse, labels, n_boot=100, seed=1)
    assert better_low < low and high < worse_high


def test_paired_mean_difference_of_runs_against_a_reference():
    better, worse, labels = _two_systems(3.0, 1.0)
    # One run: the two-system interval.
    assert paired_mean_eer_difference_interval([worse], better, labels, n_boot=80, seed=2) == (
        paired_eer_difference_interval(worse, better, labels, n_boot=80, seed=2)
    )
    # A run equal to the reference and a clearly worse one: half the worse run's gap on average.
    low, high = paired_mean_eer_difference_interval([better, worse], better, labels, n_boot=80, seed=2)
    gap = equal_error_rate(worse, labels) - equal_error_rate(better, labels)
    assert 0.0 < low <= gap / 2 <= high < gap


def test_mean_intervals_reject_no_runs_and_runs_on_other_trials():
    with pytest.raises(ValueError, match="at least one run"):
        bootstrap_mean_eer_interval([], HAND_LABELS)
    with pytest.raises(ValueError, match="differ in length"):
        paired_mean_eer_difference_interval([HAND_SCORES, HAND_SCORES[:-1]], HAND_SCORES, HAND_LABELS)
