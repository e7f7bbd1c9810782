"""TensorBoard view of a run directory, rebuilt from its files so it never disagrees with them.

Layout under `RunDirectory.tensorboard_dir` (each folder is one TensorBoard run)::

    hparams/             HParams experiment summary: every knob and metric (`search.tensorboard_hparams`)
    hparams/trial-0007/  one session per finished trial: knob values, metric scalars, status
    search/              progress scalars per finished trial and the Pareto figures (`search.tensorboard_figures`)
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from search.front import front_eligible
from search.front_rank import recorded_front_ranks
from search.pareto import Objective, pareto_front
from search.run_dir import RunDirectory
from search.tensorboard_figures import front_figures
from search.tensorboard_hparams import write_hparams
from search.trial_columns import finite

HPARAMS_RUN = "hparams"
SEARCH_RUN = "search"
SIZE_BUDGET_DIVISORS = (4, 6, 8)
"""Size budgets of the best-quality curves, as fractions 1/d of the FP32 reference size."""

_SIZE = "size_bytes"


def write_tensorboard(run_dir: RunDirectory) -> Path:
    """(Re)write the run's TensorBoard folder from its reference, trials, front and hypervolume files.

    The folder is cleared first, so calling this after every trial (or again after the run)
    leaves exactly one session per trial and one point per step.

    Returns:
        The TensorBoard folder, ready for `tensorboard --logdir`.
    """
    reference = run_dir.read_reference()
    trials = run_dir.read_trials()
    pareto = run_dir.read_pareto()
    objectives = [Objective.parse(item) for item in pareto["objectives"]]
    hypervolume = run_dir.read_hypervolume()
    ranks = recorded_front_ranks(run_dir, trials, pareto["members"], objectives)

    root = run_dir.tensorboard_dir
    shutil.rmtree(root, ignore_errors=True)
    write_hparams(root / HPARAMS_RUN, trials, reference, objectives, ranks)
    with SummaryWriter(str(root / SEARCH_RUN)) as writer:
        _write_progress(writer, trials, objectives, reference, hypervolume)
        for tag, figure in front_figures(trials, objectives, reference, pareto["members"]).items():
            writer.add_figure(tag, figure, len(trials))
    return root


def _write_progress(
    writer: SummaryWriter,
    trials: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    reference: Mapping[str, Any],
    hypervolume: Sequence[float],
) -> None:
    """Hypervolume, front size and best quality under size budgets after each finished trial.

    The step is the number of trials finished (hypervolume.csv's `trials_finished`), counting
    failed ones, so every curve shares the hypervolume's x axis.
    """
    for step, value in enumerate(hypervolume, start=1):
        writer.add_scalar("hypervolume", value, step)
    quality = next((objective for objective in objectives if objective.metric != _SIZE), None)
    complete: list[Mapping[str, Any]] = []
    for step, row in enumerate(trials, start=1):
        if front_eligible(row):  # complete and feasible, as the front's members
            complete.append(row)
        writer.add_scalar("front_size", len(pareto_front(complete, objectives)), step)
        if quality is None:
            continue
        for divisor in SIZE_BUDGET_DIVISORS:
            best = _best_within(complete, quality, reference[_SIZE] / divisor)
            if best is not None:
                writer.add_scalar(f"best_{quality.metric}/size_le_fp32_div_{divisor}", best, step)


def _best_within(rows: Sequence[Mapping[str, Any]], quality: Objective, size_budget: float) -> float | None:
    """The best value of the quality objective among rows no larger than the budget."""
    values = [
        value
        for row in rows
        if (size := finite(row.get(_SIZE))) is not None and size <= size_budget
        and (value := finite(row.get(quality.metric))) is not None
    ]
    if not values:
        return None
    return max(values) if quality.maximise else min(values)


PROJECTOR_RUN = "projector"


def write_embedding_projector(run_dir: RunDirectory, embeddings: np.ndarray, speakers: Sequence[str], tag: str) -> Path:
    """Test-set speaker embeddings of one model for TensorBoard's projector, speaker as metadata.

    Written beside the runs `write_tensorboard` makes; call it after that, which clears the folder.
    """
    folder = run_dir.tensorboard_dir / PROJECTOR_RUN
    with SummaryWriter(str(folder)) as writer:
        writer.add_embedding(embeddings, metadata=list(speakers), tag=tag)
    return folder
