"""Speaker-verification quality: trial scores from embeddings, then EER and minDCF.

Kept free of torch so that reports and benchmarks can recompute every quality number from
saved embeddings or scores alone. ROC points come from scikit-learn; only the EER crossing,
the DCF minimum and the trial list are written here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class VerificationMetrics:
    """Quality of one set of embeddings on its all-pairs trial list.

    Attributes:
        eer: Equal error rate as a fraction in [0, 1].
        min_dcf: Normalised minimum detection cost (p_target 0.01, C_miss = C_fa = 1).
        num_trials: Trials scored.
        num_target_trials: Trials whose two utterances share a speaker.
    """

    eer: float
    min_dcf: float
    num_trials: int
    num_target_trials: int


def equal_error_rate(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Error rate where the miss rate equals the false-alarm rate.

    The crossing usually falls between two ROC points; the two rates are interpolated
    linearly between the points that bracket it, so the EER does not jump with the
    granularity of small trial lists.

    Args:
        scores: One score per trial; higher means "same speaker".
        labels: 1 (or True) for target trials, 0 (or False) for non-target trials.

    Returns:
        The EER as a fraction in [0, 1].

    Raises:
        ValueError: If the inputs differ in length, a score is not finite, or the labels are
            not binary with both classes present.
    """
    false_positive_rate, false_negative_rate = _error_rates(scores, labels)
    gap = false_negative_rate - false_positive_rate
    # The ROC starts at gap +1 (reject all) and ends at gap -1 (accept all), so a crossing exists.
    crossing = int(np.argmax(gap <= 0.0))
    if gap[crossing] == 0.0:
        return float(false_positive_rate[crossing])
    before, after = gap[crossing - 1], gap[crossing]
    fraction = before / (before - after)
    low, high = false_positive_rate[crossing - 1], false_positive_rate[crossing]
    return float(low + fraction * (high - low))


def minimum_dcf(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Normalised minimum detection cost over all decision thresholds.

    The cost is divided by that of the better trivial system (always accept or always reject),
    so 0 is perfect and 1 means the scores are no better than a fixed decision.

    Args:
        scores: One score per trial; higher means "same speaker".
        labels: 1 (or True) for target trials, 0 (or False) for non-target trials.
        p_target: Prior probability of a target trial, in (0, 1).
        c_miss: Cost of rejecting a target trial, > 0.
        c_fa: Cost of accepting a non-target trial, > 0.

    Returns:
        The normalised minDCF, in [0, 1].

    Raises:
        ValueError: On invalid scores or labels (see `equal_error_rate`) or cost parameters.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0.0 or c_fa <= 0.0:
        raise ValueError(f"c_miss and c_fa must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    false_positive_rate, false_negative_rate = _error_rates(scores, labels)
    miss_weight = c_miss * p_target
    false_alarm_weight = c_fa * (1.0 - p_target)
    costs = miss_weight * false_negative_rate + false_alarm_weight * false_positive_rate
    return float(costs.min() / min(miss_weight, false_alarm_weight))


def cosine_score_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity between every pair of embeddings (rows).

    Raises:
        ValueError: If `embeddings` is not 2-D, holds a non-finite value or has a zero row
            (its cosine would be undefined).
    """
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (utterances x dims), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("embeddings contain non-finite values (NaN or inf)")
    norms = np.linalg.norm(matrix, axis=1)
    zero_rows = np.flatnonzero(norms == 0.0)
    if zero_rows.size:
        raise ValueError(f"embeddings have zero norm at rows {zero_rows[:10].tolist()}; cosine is undefined")
    unit = matrix / norms[:, None]
    return unit @ unit.T


def all_pair_trials(
    embeddings: np.ndarray,
    speaker_labels: Sequence[object] | np.ndarray,
    max_trials: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-scored trials for every unordered pair of distinct utterances.

    With `max_trials` below the number of pairs, a seeded subset is kept. Target pairs are
    rare (about 1 / number of speakers) and bound the EER's resolution, so all of them are
    kept as long as they take at most half the budget; otherwise the budget is split evenly
    between the classes. EER and minDCF use per-class error rates, so changing the class
    ratio this way does not bias them. Kept trials stay in upper-triangle order.

    Args:
        embeddings: One row per utterance.
        speaker_labels: One speaker identity per utterance (any comparable values).
        max_trials: Largest number of trials to return (at least 2), or None for all pairs.
        seed: Seed of the subset draw.

    Returns:
        (scores, labels): float scores and int labels (1 = same speaker), one per trial.

    Raises:
        ValueError: If fewer than two utterances are given, the label count differs from the
            embedding count, or `max_trials` is below 2.
    """
    speakers = np.asarray(speaker_labels)
    scores_matrix = cosine_score_matrix(embeddings)
    count = scores_matrix.shape[0]
    if speakers.shape != (count,):
        raise ValueError(
            f"speaker_labels has shape {speakers.shape}, expected ({count},) to match embeddings"
        )
    if count < 2:
        raise ValueError(f"need at least 2 utterances to form a trial, got {count}")
    first, second = np.triu_indices(count, k=1)
    labels = (speakers[first] == speakers[second]).astype(np.int64)
    if max_trials is not None:
        if max_trials < 2:
            raise ValueError(f"max_trials must be at least 2, got {max_trials}")
        if labels.size > max_trials:
            kept = _subset_trials(labels, max_trials, seed)
            first, second, labels = first[kept], second[kept], labels[kept]
    return scores_matrix[first, second], labels


def verification_metrics(
    embeddings: np.ndarray,
    speaker_labels: Sequence[object] | np.ndarray,
    max_trials: int | None = None,
    seed: int = 0,
) -> VerificationMetrics:
    """EER and minDCF of embeddings on their all-pairs trial list (see `all_pair_trials`)."""
    scores, labels = all_pair_trials(embeddings, speaker_labels, max_trials=max_trials, seed=seed)
    return VerificationMetrics(
        eer=equal_error_rate(scores, labels),
        min_dcf=minimum_dcf(scores, labels),
        num_trials=int(labels.size),
        num_target_trials=int(labels.sum()),
    )


def bootstrap_eer_interval(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER, resampling trials.

    Targets and non-targets are resampled separately (each with its own count), so every
    replicate has both classes even when targets are rare.

    Args:
        scores: One score per trial.
        labels: 1 for target trials, 0 for non-target trials.
        n_boot: Number of bootstrap replicates, >= 1.
        confidence: Coverage of the interval, in (0, 1).
        seed: Seed of the resampling.

    Returns:
        (low, high) EER bounds as fractions.
    """
    return bootstrap_mean_eer_interval([scores], labels, n_boot, confidence, seed)


def bootstrap_mean_eer_interval(
    runs: Sequence[Sequence[float] | np.ndarray],
    labels: Sequence[int] | np.ndarray,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean EER of several runs of one recipe (e.g. its seeds).

    A recipe whose result depends on its seed is judged on the mean over seeds, not on a lucky
    one; every replicate resamples the trials once and scores every run on that one resample.

    Args:
        runs: Per run, one score per trial, in the same trial order.
        labels, n_boot, confidence, seed: As for `bootstrap_eer_interval`.

    Returns:
        (low, high) bounds of the mean EER, as fractions.
    """
    systems, label_array = _validated_runs(runs, labels)
    replicates = [
        _mean_eer(systems, label_array, chosen) for chosen in _resampled_trials(label_array, n_boot, confidence, seed)
    ]
    return _percentile_interval(replicates, confidence)


def paired_eer_difference_interval(
    first_scores: Sequence[float] | np.ndarray,
    second_scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of EER(first) - EER(second), two systems scored on the same trials.

    Each replicate resamples the trials once (targets and non-targets separately, as
    `bootstrap_eer_interval` does) and scores both systems on that one resample. Which trials
    happen to be hard is shared by both systems and cancels in the difference, so this interval is
    far narrower than the gap between two separate EER intervals, and it is what tells whether one
    system is worse than the other on these trials or only looks so.

    Args:
        first_scores, second_scores: Each system's score per trial, in the same trial order.
        labels: 1 for target trials, 0 for non-target trials.
        n_boot: Number of bootstrap replicates, >= 1.
        confidence: Coverage of the interval, in (0, 1).
        seed: Seed of the resampling.

    Returns:
        (low, high) bounds of the EER difference, as fractions.

    Raises:
        ValueError: Invalid scores or labels (see `equal_error_rate`), systems scored on
            different numbers of trials, or invalid `n_boot` or `confidence`.
    """
    return paired_mean_eer_difference_interval([first_scores], second_scores, labels, n_boot, confidence, seed)


def paired_mean_eer_difference_interval(
    runs: Sequence[Sequence[float] | np.ndarray],
    reference_scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean-over-runs EER - EER(reference), all on the same trials.

    The paired comparison of `paired_eer_difference_interval` for a recipe run several times (its
    seeds): each replicate resamples the trials once, scores every run and the reference on it,
    and takes the runs' mean EER minus the reference's.

    Args:
        runs: Per run, one score per trial, in the reference's trial order.
        reference_scores: The reference system's score per trial.
        labels, n_boot, confidence, seed: As for `paired_eer_difference_interval`.

    Returns:
        (low, high) bounds of the EER difference, as fractions.
    """
    systems, label_array = _validated_runs(runs, labels)
    reference, _ = _validated_trials(reference_scores, labels)
    differences = [
        _mean_eer(systems, label_array, chosen) - equal_error_rate(reference[chosen], label_array[chosen])
        for chosen in _resampled_trials(label_array, n_boot, confidence, seed)
    ]
    return _percentile_interval(differences, confidence)


def _validated_runs(
    runs: Sequence[Sequence[float] | np.ndarray], labels: Sequence[int] | np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every run's scores checked against the same labels (see `_validated_trials`)."""
    if len(runs) == 0:
        raise ValueError("at least one run of scores is needed")
    checked = [_validated_trials(scores, labels) for scores in runs]
    return [scores for scores, _ in checked], checked[0][1]


def _mean_eer(systems: Sequence[np.ndarray], labels: np.ndarray, chosen: np.ndarray) -> float:
    """The mean EER of `systems` on the trials `chosen`."""
    return float(np.mean([equal_error_rate(scores[chosen], labels[chosen]) for scores in systems]))


def _resampled_trials(labels: np.ndarray, n_boot: int, confidence: float, seed: int) -> Iterator[np.ndarray]:
    """Per bootstrap replicate, trial indices drawn with replacement: targets, then non-targets, each class
    keeping its count, so every replicate has both classes even when targets are rare.

    Raises:
        ValueError: `n_boot` below 1 or `confidence` outside (0, 1), before anything is drawn.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    targets, nontargets = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    return (
        np.concatenate([rng.choice(targets, targets.size), rng.choice(nontargets, nontargets.size)])
        for _ in range(n_boot)
    )


def _percentile_interval(replicates: Sequence[float], confidence: float) -> tuple[float, float]:
    """The central `confidence` share of the bootstrap replicates, as (low, high)."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def _validated_trials(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as 0/1 int64, after checking them."""
    score_array = np.asarray(scores, dtype=np.float64)
    label_array = np.asarray(labels)
    if score_array.ndim != 1 or label_array.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D, got shapes {score_array.shape} and {label_array.shape}"
        )
    if score_array.size != label_array.size:
        raise ValueError(f"scores and labels differ in length: {score_array.size} vs {label_array.size}")
    if not np.all(np.isfinite(score_array)):
        bad = np.flatnonzero(~np.isfinite(score_array))
        raise ValueError(f"scores contain non-finite values at trials {bad[:10].tolist()}")
    unexpected = set(np.unique(label_array).tolist()) - {0, 1}
    if unexpected:
        raise ValueError(f"labels must be 0/1 or bool, found {sorted(unexpected, key=repr)[:10]}")
    label_array = label_array.astype(np.int64)
    target_count = int(label_array.sum())
    if target_count in (0, label_array.size):
        found = "no trials" if label_array.size == 0 else f"{target_count} of {label_array.size} trials are targets"
        raise ValueError(f"labels must contain both target and non-target trials, got {found}")
    return score_array, label_array


def _error_rates(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False-positive and false-negative rates at every distinct threshold, strictest first."""
    score_array, label_array = _validated_trials(scores, labels)
    false_positive_rate, true_positive_rate, _ = roc_curve(label_array, score_array, drop_intermediate=False)
    return false_positive_rate, 1.0 - true_positive_rate


def _subset_trials(labels: np.ndarray, max_trials: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of `max_trials` trials favouring target trials."""
    target_indices = np.flatnonzero(labels == 1)
    nontarget_indices = np.flatnonzero(labels == 0)
    target_count = min(target_indices.size, max(max_trials // 2, max_trials - nontarget_indices.size))
    rng = np.random.default_rng(seed)
    kept_targets = rng.choice(target_indices, size=target_count, replace=False)
    kept_nontargets = rng.choice(nontarget_indices, size=max_trials - target_count, replace=False)
    return np.sort(np.concatenate([kept_targets, kept_nontargets]))
