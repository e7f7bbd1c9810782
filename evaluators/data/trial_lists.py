"""Verification trial lists in the VoxCeleb format: one `label enrol test` line per trial.

`1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav` (1: same speaker, 0: not),
the utterances named by their corpus keys. Official lists (Vox1-O, -E, -H) are read as they
are; a corpus without one gets a seeded, class-balanced list, which can be written in the
same format and reused elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRIAL_PATHS_SHOWN = 3
"""How many missing files an error names (the count covers all of them)."""


class TrialListError(ValueError):
    """A trial list that cannot be used (malformed line, names files the corpus lacks)."""


@dataclass(frozen=True)
class Trial:
    """One verification trial: does `test` speak like `enrol`?"""

    target: bool
    enrol: str
    test: str


@dataclass(frozen=True)
class TrialIndices:
    """A trial list resolved against an evaluation set: row indices into its embeddings.

    Attributes:
        first: Index of each trial's enrolment utterance.
        second: Index of each trial's test utterance.
        labels: 1 for target trials, 0 for non-target trials.
    """

    first: np.ndarray
    second: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine similarity of each trial's two embeddings (rows of `embeddings`)."""
        matrix = np.asarray(embeddings, dtype=np.float64)
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        return np.einsum("ij,ij->i", unit[self.first], unit[self.second])


def read_trial_list(path: str | os.PathLike[str]) -> tuple[Trial, ...]:
    """Trials of a `label enrol test` file (blank lines ignored).

    Raises:
        TrialListError: If the file is missing or empty, or a line is malformed; names file and line.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise TrialListError(f"{source}: cannot read trial list ({error.strerror})") from None
    trials = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise TrialListError(f"{source}:{line_number}: expected 'label enrol test' with label 0 or 1, got {line!r}")
        trials.append(Trial(fields[0] == "1", fields[1], fields[2]))
    if not trials:
        raise TrialListError(f"{source}: no trials")
    return tuple(trials)


def write_trial_list(path: str | os.PathLike[str], trials: Sequence[Trial]) -> None:
    """Write trials as `label enrol test` lines (what `read_trial_list` reads back)."""
    for trial in trials:
        for key in (trial.enrol, trial.test):
            if not key or any(character.isspace() for character in key):
                raise TrialListError(f"utterance key {key!r}: cannot be written to a trial list (empty or whitespace)")
    lines = (f"{int(trial.target)} {trial.enrol} {trial.test}\n" for trial in trials)
    Path(path).write_text("".join(lines), encoding="utf-8")


def trial_keys(trials: Sequence[Trial]) -> set[str]:
    """Every utterance key the trials name."""
    return {key for trial in trials for key in (trial.enrol, trial.test)}


def resolve_trials(trials: Sequence[Trial], keys: Sequence[str], description: str) -> TrialIndices:
    """Index each trial's utterances in `keys` (an evaluation set's utterance order).

    Args:
        description: What the trials come from, for the error (e.g. the trial file).

    Raises:
        TrialListError: If a trial names a key that is not in `keys`: count and first keys.
    """
    index = {key: position for position, key in enumerate(keys)}
    missing = sorted(trial_keys(trials) - index.keys())
    if missing:
        shown = ", ".join(missing[:TRIAL_PATHS_SHOWN]) + (", ..." if len(missing) > TRIAL_PATHS_SHOWN else "")
        raise TrialListError(f"{description}: names {len(missing)} file(s) missing from the evaluation set: {shown}")
    return TrialIndices(
        first=np.array([index[trial.enrol] for trial in trials], dtype=np.int64),
        second=np.array([index[trial.test] for trial in trials], dtype=np.int64),
        labels=np.array([int(trial.target) for trial in trials], dtype=np.int64),
    )


def generate_trials(
    keys: Sequence[str], speakers: Sequence[str], max_trials: int, seed: int, target_fraction: float = 0.5
) -> tuple[Trial, ...]:
    """A seeded trial list over utterances: every pair when they fit, else a class-balanced sample.

    With more pairs than `max_trials`, `target_fraction` of the trials are same-speaker pairs
    (fewer if the corpus has fewer; more if it has too few different-speaker pairs), each
    class drawn uniformly without repetition. Same-speaker pairs are rare in large corpora
    and bound the EER's resolution, hence the balance (VoxCeleb1-O is balanced the same way).
    Trials come in (enrol, test) index order; enrol precedes test in `keys`.

    Raises:
        TrialListError: If the utterances cannot form both a target and a non-target trial.
    """
    if len(keys) != len(speakers):
        raise TrialListError(f"{len(keys)} keys but {len(speakers)} speakers")
    if max_trials < 2:
        raise TrialListError(f"max_trials={max_trials}: need at least 2")
    if not 0.0 < target_fraction < 1.0:
        raise TrialListError(f"target_fraction={target_fraction}: must be in (0, 1)")
    _, codes = np.unique(np.asarray(speakers), return_inverse=True)
    counts = np.bincount(codes)
    total = len(keys) * (len(keys) - 1) // 2
    total_targets = int((counts * (counts - 1) // 2).sum())
    total_nontargets = total - total_targets
    if total_targets == 0 or total_nontargets == 0:
        raise TrialListError(
            f"{len(keys)} utterances of {len(counts)} speaker(s): need a speaker with 2 utterances and 2 speakers"
        )
    rng = np.random.default_rng(seed)
    if total <= max_trials:
        first, second = np.triu_indices(len(keys), k=1)
    else:
        targets = min(total_targets, max(round(max_trials * target_fraction), max_trials - total_nontargets))
        pairs = np.concatenate(
            [_sample_pairs(rng, codes, targets, same=True), _sample_pairs(rng, codes, max_trials - targets, same=False)]
        )
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        first, second = pairs[:, 0], pairs[:, 1]
    return tuple(Trial(bool(codes[i] == codes[j]), keys[i], keys[j]) for i, j in zip(first.tolist(), second.tolist()))


def _sample_pairs(rng: np.random.Generator, codes: np.ndarray, count: int, same: bool) -> np.ndarray:
    """`count` distinct pairs (i < j) whose speakers are equal (`same`) or differ, uniformly.

    Pools up to twice the request are listed and sampled; larger ones are sampled by drawing
    pairs (same-speaker pairs through a speaker drawn in proportion to its pair count) and
    dropping repeats, which never needs the quadratic list of all pairs.
    """
    if count == 0:
        return np.zeros((0, 2), dtype=np.int64)
    counts = np.bincount(codes)
    pool = int((counts * (counts - 1) // 2).sum())
    if not same:
        pool = len(codes) * (len(codes) - 1) // 2 - pool
    if pool <= 2 * count:
        listed = _list_pairs(codes, same)
        return listed[np.sort(rng.choice(len(listed), count, replace=False))]
    members = [np.flatnonzero(codes == code) for code in range(len(counts))]
    weights = counts * (counts - 1) / 2.0
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < count:
        batch = 2 * (count - len(chosen))
        if same:
            speakers = rng.choice(len(counts), batch, p=weights / weights.sum())
            picks = [rng.choice(members[speaker], 2, replace=False) for speaker in speakers]
            first, second = np.array([p[0] for p in picks]), np.array([p[1] for p in picks])
        else:
            first, second = rng.integers(len(codes), size=batch), rng.integers(len(codes), size=batch)
            valid = codes[first] != codes[second]
            first, second = first[valid], second[valid]
        for i, j in zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist()):
            if len(chosen) == count:
                break
            chosen.setdefault((i, j))
    return np.array(list(chosen), dtype=np.int64)


def _list_pairs(codes: np.ndarray, same: bool) -> np.ndarray:
    """Every pair (i < j) whose speakers are equal (`same`) or differ, in index order."""
    rows = []
    for i in range(len(codes) - 1):
        partners = np.flatnonzero((codes[i + 1 :] == codes[i]) == same) + i + 1
        rows.append(np.stack([np.full(len(partners), i), partners], axis=1))
    return np.concatenate(rows).astype(np.int64)
