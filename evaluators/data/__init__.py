"""Corpora for the evaluators: the built-in synthetic speaker corpus and its feature cache."""

from evaluators.data.cache import DEFAULT_CACHE_ROOT, cached_tensors, content_hash, load_or_build_features
from evaluators.data.synthetic import (
    CORPUS_VERSION,
    SPLITS,
    SyntheticCorpusConfig,
    Utterance,
    generate_speaker_utterances,
    generate_split,
)

__all__ = [
    "CORPUS_VERSION",
    "DEFAULT_CACHE_ROOT",
    "SPLITS",
    "SyntheticCorpusConfig",
    "Utterance",
    "cached_tensors",
    "content_hash",
    "generate_speaker_utterances",
    "generate_split",
    "load_or_build_features",
]
