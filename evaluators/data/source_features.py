"""Features of what a `data:` block names: the training set and each evaluation set.

Synthetic sources go through the synthetic feature cache exactly as before (same cache
keys, all-pairs scoring); corpora on disk through the corpus feature cache, scored on their
official trial list or, without one, on a seeded balanced list.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evaluators.data.cache import load_or_build_features
from evaluators.data.corpus_features import load_or_build_corpus_features
from evaluators.data.sources import EvalSetConfig, Source
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.data.trial_lists import TrialIndices, generate_trials, read_trial_list, resolve_trials
from evaluators.features import FbankConfig, FeatureSet
from evaluators.metrics import VerificationMetrics, all_pair_trials, equal_error_rate, minimum_dcf

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainingSet:
    """The teacher's training features and what identifies them in the teacher's cache key.

    Attributes:
        features: Training utterances.
        identity: The synthetic corpus config (as teacher keys always hashed it) or the corpus
            feature cache key (which covers every file's size and modification time).
    """

    features: FeatureSet
    identity: Any


@dataclass
class EvalSet:
    """One named evaluation set, ready to score embeddings.

    Attributes:
        name: Suffix of its metrics (`eer@<name>`).
        features: One [frames, mels] tensor per utterance.
        labels: Speaker index per utterance.
        trials: The trials to score; None scores all pairs (a seeded subset beyond
            `max_trials`), as the synthetic corpus always has.
    """

    name: str
    features: list[torch.Tensor]
    labels: list[int]
    trials: TrialIndices | None = None

    def scored_trials(self, embeddings: np.ndarray, max_trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of the trials `metrics` scores, for per-trial statistics such as paired bootstraps."""
        if self.trials is None:
            return all_pair_trials(embeddings, np.asarray(self.labels), max_trials, seed)
        return self.trials.scores(embeddings), np.asarray(self.trials.labels)

    def metrics(self, embeddings: np.ndarray, max_trials: int, seed: int) -> VerificationMetrics:
        """EER and minDCF of `embeddings` (one row per utterance of this set)."""
        scores, labels = self.scored_trials(embeddings, max_trials, seed)
        return VerificationMetrics(
            eer=equal_error_rate(scores, labels),
            min_dcf=minimum_dcf(scores, labels),
            num_trials=len(labels),
            num_target_trials=int(labels.sum()),
        )


def load_training_set(
    source: Source, fbank: FbankConfig, cache_root: str | os.PathLike[str], progress: Progress | None = None
) -> TrainingSet:
    """Training features: the synthetic corpus's train split, or the corpus's selected utterances."""
    if isinstance(source, SyntheticCorpusConfig):
        return TrainingSet(load_or_build_features(source, fbank, "train", cache_root, progress), source)
    corpus = load_or_build_corpus_features(source, fbank, cache_root, progress=progress)
    return TrainingSet(corpus.features, corpus.key)


def load_eval_set(
    config: EvalSetConfig,
    fbank: FbankConfig,
    cache_root: str | os.PathLike[str],
    max_trials: int,
    seed: int,
    progress: Progress | None = None,
) -> EvalSet:
    """Features and trials of one evaluation set.

    Args:
        max_trials: Size of the generated trial list of a corpus without one.
        seed: Seed of that list.

    Raises:
        CorpusError, TrialListError: If the corpus or its trial list cannot be used.
    """
    source = config.source
    if isinstance(source, SyntheticCorpusConfig):
        features = load_or_build_features(source, fbank, "test", cache_root, progress)
        return EvalSet(config.name, features.features, features.labels)
    official = read_trial_list(source.trials) if source.trials is not None else None
    features = load_or_build_corpus_features(source, fbank, cache_root, official, progress).features
    if official is None:
        trials = generate_trials(features.utterance_ids, features.speaker_ids, max_trials, seed)
        description = f"{config.name}: generated trials"
    else:
        trials, description = official, f"{source.trials} (files skipped as bad audio cannot be scored)"
    indices = resolve_trials(trials, features.utterance_ids, description)
    return EvalSet(config.name, features.features, features.labels, indices)
