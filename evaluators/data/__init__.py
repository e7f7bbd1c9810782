"""Corpora for the evaluators: the built-in synthetic speaker corpus, corpora on disk, trial lists and the feature caches."""

from evaluators.data.audio import AudioError, energy_vad, load_audio
from evaluators.data.cache import DEFAULT_CACHE_ROOT, cached_tensors, content_hash, load_or_build_features
from evaluators.data.corpora import Corpus, CorpusError, CorpusUtterance, read_corpus
from evaluators.data.sources import CorpusConfig, DataConfig, EvalSetConfig
from evaluators.data.synthetic import (
    CORPUS_VERSION,
    SPLITS,
    SyntheticCorpusConfig,
    Utterance,
    generate_speaker_utterances,
    generate_split,
)
from evaluators.data.trial_lists import Trial, TrialListError, generate_trials, read_trial_list, write_trial_list

__all__ = [
    "AudioError",
    "CORPUS_VERSION",
    "Corpus",
    "CorpusConfig",
    "CorpusError",
    "CorpusUtterance",
    "DEFAULT_CACHE_ROOT",
    "DataConfig",
    "EvalSetConfig",
    "SPLITS",
    "SyntheticCorpusConfig",
    "Trial",
    "TrialListError",
    "Utterance",
    "cached_tensors",
    "content_hash",
    "energy_vad",
    "generate_speaker_utterances",
    "generate_split",
    "generate_trials",
    "load_audio",
    "load_or_build_features",
    "read_corpus",
    "read_trial_list",
    "write_trial_list",
]
