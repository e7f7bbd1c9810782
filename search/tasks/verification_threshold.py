"""The decision thresholds a verification bundle ships: chosen on half of the test speakers, checked on the rest.

A threshold judged on the trials it was chosen on looks better than it will do on new speakers.
So the main evaluation set's speakers are shuffled (seeded) and halved: pairs within the
calibration half choose the threshold at the EER point and at a 1% false-accept rate, and pairs
within the held-out half, speakers the thresholds never saw, give the error rates the card
states. The card's EER and minDCF are threshold-free, so the choice does not touch them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluators.evaluation import Evaluation
from evaluators.metrics import all_pair_trials
from evaluators.training import embed_utterances
from evaluators.verification import PreparedVerification
from search.tasks.base import TaskExportError

EER_POINT = "eer"
FALSE_ACCEPT_POINT = "false_accept_1%"
FALSE_ACCEPT_RATE = 0.01
"""The false-accept rate of `FALSE_ACCEPT_POINT`'s threshold on the calibration trials (at most)."""
MIN_SPEAKERS = 4
"""Each half needs two speakers for different-speaker trials."""


def eer_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The trial score at which the false-accept and false-reject rates are closest (accept: score >= it)."""
    candidates = np.unique(scores)
    nontarget, target = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    false_accept = 1.0 - np.searchsorted(nontarget, candidates, side="left") / nontarget.size
    false_reject = np.searchsorted(target, candidates, side="left") / target.size
    return float(candidates[np.argmin(np.abs(false_accept - false_reject))])


def false_accept_threshold(scores: np.ndarray, labels: np.ndarray, rate: float) -> float:
    """The lowest threshold accepting at most `rate` of the different-speaker trials: just above the
    different-speaker score that would be one false accept too many."""
    nontarget = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(rate * nontarget.size))
    return float(np.nextafter(nontarget[allowed], np.inf))


def error_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """False-accept and false-reject rates of "same speaker when score >= threshold"."""
    accepted = scores >= threshold
    return {"false_accept": float(accepted[labels == 0].mean()), "false_reject": float((~accepted)[labels == 1].mean())}


def speaker_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Utterance indices of the calibration half and of the held-out half of the speakers (seeded shuffle).

    Raises:
        TaskExportError: Fewer than `MIN_SPEAKERS` speakers.
    """
    speakers = np.unique(labels)
    if speakers.size < MIN_SPEAKERS:
        raise TaskExportError(
            f"the evaluation set has {speakers.size} speakers: calibrating the decision threshold on half of them "
            f"and checking it on the other half needs at least {MIN_SPEAKERS}"
        )
    calibration = np.isin(labels, np.random.default_rng(seed).permutation(speakers)[: speakers.size // 2])
    return np.flatnonzero(calibration), np.flatnonzero(~calibration)


def decision_thresholds(evaluation: Evaluation, prepared: PreparedVerification) -> dict[str, Any]:
    """config.json's `decision`: the thresholds, the rule, and the error rates on both halves.

    Raises:
        TaskExportError: Too few speakers, or a half without same-speaker pairs.
    """
    eval_set = prepared.eval_sets[0]
    embeddings = embed_utterances(evaluation.compressed.model, eval_set.features).numpy()
    labels = np.asarray(eval_set.labels)
    calibration, held_out = (_Half(embeddings[indices], labels[indices], prepared) for indices in speaker_halves(labels, prepared.seed))
    thresholds = {
        EER_POINT: eer_threshold(calibration.scores, calibration.labels),
        FALSE_ACCEPT_POINT: false_accept_threshold(calibration.scores, calibration.labels, FALSE_ACCEPT_RATE),
    }
    return {
        "score": "cosine similarity of the two embeddings; same speaker when score >= threshold",
        "default": EER_POINT,
        "thresholds": thresholds,
        "eval_set": eval_set.name,
        "split": f"speakers shuffled with seed {prepared.seed}: the first half calibrates, the second is held out",
        "calibration": calibration.record(thresholds),
        "held_out": held_out.record(thresholds),
    }


class _Half:
    """The all-pairs trials (at most `max_trials`, seeded) of one half of the speakers."""

    def __init__(self, embeddings: np.ndarray, speakers: np.ndarray, prepared: PreparedVerification) -> None:
        self.speakers = int(np.unique(speakers).size)
        self.scores, self.labels = all_pair_trials(embeddings, speakers, prepared.max_trials, prepared.seed)
        if self.labels.all() or not self.labels.any():
            raise TaskExportError(
                f"a half of the evaluation set ({self.speakers} speakers, {speakers.size} utterances) lacks same-speaker "
                "or different-speaker pairs; the decision threshold cannot be calibrated"
            )

    def record(self, thresholds: dict[str, float]) -> dict[str, Any]:
        return {
            "speakers": self.speakers,
            "trials": int(self.labels.size),
            "target_trials": int(self.labels.sum()),
            "error_rates": {point: error_rates(self.scores, self.labels, threshold) for point, threshold in thresholds.items()},
        }


__all__ = ["EER_POINT", "FALSE_ACCEPT_POINT", "decision_thresholds", "eer_threshold", "error_rates", "false_accept_threshold"]
