"""The `data:` block: which corpus trains the teacher and which named sets evaluate candidates.

A run trains on one source and reports quality on every evaluation set (e.g. in-domain and
cross-domain), each metric suffixed with the set's name (`eer@an4`). A source is either the
built-in synthetic corpus (`SyntheticCorpusConfig`; its train split trains, its test split
evaluates) or a corpus on disk (`CorpusConfig`). The old one-corpus form
`data: {corpus: synthetic, ...}` is `DataConfig.synthetic(corpus)`: train and test split of
that corpus, the test split named "synthetic".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from evaluators.data.corpora import CORPUS_READERS, SPEAKER_PARTS
from evaluators.data.synthetic import SyntheticCorpusConfig

SYNTHETIC = "synthetic"
"""The synthetic corpus's `corpus:` value, and the name of its test split as an evaluation set."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class CorpusConfig:
    """A corpus on disk and how to select, check and read its utterances.

    Attributes:
        corpus: Layout: `folder`, `kaldi`, `voxceleb` or `librispeech` (see `corpora`).
        path: Root folder (Kaldi: the data directory), relative to the working directory.
        speakers: `all`, or the `train` / `test` side of a seeded speaker-disjoint split.
        test_fraction: Share of speakers on the test side of that split.
        split_seed: Seed of the split and of the `max_*` subsets.
        trials: Official trial list (`label enrol test`, keys relative to `path`); evaluation
            sets only. Without one, a seeded balanced list of `evaluation.max_trials` is drawn.
        max_speakers: Use at most this many speakers (seeded subset), e.g. of VoxCeleb2.
        max_utterances_per_speaker: Use at most this many utterances of each speaker.
        min_seconds: Shorter files are bad audio (skipped, or an error when `strict`).
        max_seconds: Keep only the first seconds of longer utterances (after VAD); bounds the
            memory of the feature cache.
        expected_sample_rate: When set, files at another rate are bad audio; otherwise any
            rate is resampled to `data.sample_rate`.
        vad: Drop silence with an energy VAD before computing features.
        strict: Bad audio is an error instead of being reported and skipped.
    """

    corpus: str
    path: str
    speakers: str = "all"
    test_fraction: float = 0.2
    split_seed: int = 0
    trials: str | None = None
    max_speakers: int | None = None
    max_utterances_per_speaker: int | None = None
    min_seconds: float = 0.5
    max_seconds: float | None = None
    expected_sample_rate: int | None = None
    vad: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        if self.corpus not in CORPUS_READERS:
            raise ValueError(f"corpus={self.corpus!r}: expected one of {[SYNTHETIC, *sorted(CORPUS_READERS)]}")
        if not self.path:
            raise ValueError("path: must name the corpus folder")
        if self.speakers not in SPEAKER_PARTS:
            raise ValueError(f"speakers={self.speakers!r}: expected one of {list(SPEAKER_PARTS)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction}: must be in (0, 1)")
        for key in ("max_speakers", "max_utterances_per_speaker"):
            value = getattr(self, key)
            if value is not None and value < 2:
                raise ValueError(f"{key}={value}: need at least 2")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds={self.min_seconds}: must be >= 0")
        if self.max_seconds is not None and (self.max_seconds <= 0 or self.max_seconds < self.min_seconds):
            raise ValueError(f"max_seconds={self.max_seconds}: must be positive and >= min_seconds={self.min_seconds}")
        if self.expected_sample_rate is not None and self.expected_sample_rate < 1:
            raise ValueError(f"expected_sample_rate={self.expected_sample_rate}: must be positive")


Source = Union[SyntheticCorpusConfig, CorpusConfig]
"""Where utterances come from: the synthetic corpus or a corpus on disk."""


@dataclass(frozen=True)
class EvalSetConfig:
    """A named evaluation set; its metrics are reported as `<metric>@<name>`."""

    name: str
    source: Source

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"name={self.name!r}: use letters, digits, '_', '.' or '-', starting with a letter/digit")
        if isinstance(self.source, CorpusConfig) and self.source.speakers == "train":
            raise ValueError("speakers='train': an evaluation set must not use the training side of a split")


@dataclass(frozen=True)
class DataConfig:
    """The `data:` block.

    Attributes:
        train: The source the teacher is trained on.
        eval: Evaluation sets, at least one; the first one's metrics are also reported
            without suffix (`eer`), so objectives may say `eer` for the main set.
        sample_rate: Rate of the audio the features are computed from (real corpora are
            resampled to it; synthetic sources must be rendered at it).
    """

    train: Source = field(default_factory=SyntheticCorpusConfig)
    eval: tuple[EvalSetConfig, ...] = field(
        default_factory=lambda: (EvalSetConfig(SYNTHETIC, SyntheticCorpusConfig()),)
    )
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not self.eval:
            raise ValueError("eval: need at least one evaluation set")
        names = [eval_set.name for eval_set in self.eval]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"eval: evaluation set name {duplicates[0]!r} is used twice")
        if isinstance(self.train, CorpusConfig) and self.train.trials is not None:
            raise ValueError("train.trials: trial lists belong to evaluation sets")
        if isinstance(self.train, CorpusConfig) and self.train.speakers == "test":
            raise ValueError("train.speakers='test' would train on the evaluation side of the split")
        for where, source in [("train", self.train), *((f"eval.{e.name}", e.source) for e in self.eval)]:
            if isinstance(source, SyntheticCorpusConfig) and source.sample_rate != self.sample_rate:
                raise ValueError(
                    f"{where}.sample_rate={source.sample_rate}: must equal data.sample_rate={self.sample_rate}"
                )

    @classmethod
    def synthetic(cls, corpus: SyntheticCorpusConfig) -> DataConfig:
        """The one-corpus form: train on the corpus's train split, evaluate on its test split."""
        return cls(train=corpus, eval=(EvalSetConfig(SYNTHETIC, corpus),), sample_rate=corpus.sample_rate)

    @property
    def is_synthetic_only(self) -> bool:
        """True when this is exactly the one-corpus synthetic form (saved in that form)."""
        return isinstance(self.train, SyntheticCorpusConfig) and self == DataConfig.synthetic(self.train)

    @property
    def eval_names(self) -> tuple[str, ...]:
        """Names of the evaluation sets, in config order."""
        return tuple(eval_set.name for eval_set in self.eval)
