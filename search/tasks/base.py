"""The `Task` interface: everything that differs between what a run compresses.

A task (speaker verification, speaker extraction) owns its config sections and defaults, the
model spec, the evaluator and the settings it reads, its metrics and default objectives, the
confidence interval of its headline metric, its bundle signature, `search verify`'s agreement
checks and the model card's task-specific text. The rest of `search` asks the registry
(`search.tasks.TASKS`) for the run's task and never compares task names, so a new task is one
module and one registry line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import onnxruntime
import torch

from evaluators.data.sources import DataConfig
from evaluators.evaluation import Evaluation, Evaluator
from evaluators.fidelity import FidelityConfig
from search.checks import Check
from search.metrics import COST_METRICS, PREDICTED_LATENCY, SIZE_METRICS
from search.model_card import TaskCard
from search.pareto import Objective
from search.run_config import RunConfig
from spaces.bundle import Bundle, FeatureSettings, TensorSpec
from spaces.compress import ModelSpec

BOOTSTRAP_REPLICATES = 200
"""Bootstrap replicates of an exported bundle's confidence interval."""
CONFIDENCE = 0.95
"""Coverage of an exported bundle's confidence interval."""

Signature = tuple[FeatureSettings | None, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]
"""The front end (None for raw audio), inputs and outputs of a bundle."""
Progress = Callable[[str, int, int], None]


class TaskExportError(ValueError):
    """A model the task cannot put in a bundle faithfully: its re-scoring disagrees with the
    evaluator, or the bundle format cannot hold its front-end."""


def recorded_check(label: str, value: float, recorded: Mapping[str, float], key: str, scale: float, unit: str) -> Check:
    """The re-measured headline metric lies within the confidence interval config.json records for it.

    A bundle whose weights or recorded metrics were edited (checksum recomputed) measures outside
    its own interval; an edit that stays inside it cannot be told from measurement noise.
    """
    low, high = recorded[f"{key}_low"], recorded[f"{key}_high"]
    inside = low - 1e-9 <= value <= high + 1e-9
    return Check(
        f"{label} reproduces the recorded one",
        inside,
        f"measured {scale * value:.3f}{unit}; config.json records {scale * recorded[key]:.3f}{unit} "
        f"({scale * low:.3f} to {scale * high:.3f}{unit})",
    )


class Task(ABC):
    """What a run compresses, and everything about it that `search` must not hard-code.

    Class attributes:
        name: The `task:` value in configs and bundles.
        quality_metrics: The quality metrics a trial reports, the headline first.
        per_eval_set_metrics: Quality metrics also reported once per evaluation set (`eer@<set>`).
        default_objectives: The objectives when a config names none.
        families: The model families the task can compress.
        family_requirement: `families` in words, for the error naming a family the task cannot use.
        default_family: The model family when a config names none.
        default_sample_rate: The audio rate when the `data:` block gives none.
        teacher_config: The dataclass of the `teacher:` block.
        fidelity_config: The dataclass of the `fidelity:` block (the shared ladder, extended).
        sections: Extra top-level blocks only this task reads, name -> dataclass.
        embeds: Whether the model outputs speaker embeddings (TensorBoard's projector shows them).
        sensitivity_data: Builds the run's source of sensitivity batches and loss from its config
            (`search.sensitivity_tables.SensitivityDataSource`); None when the task offers none,
            so only data-free sensitivity estimators apply.
        bundle_files: Files copied into every bundle, file name in the bundle -> source file
            (verification's runner).
    """

    name: ClassVar[str]
    quality_metrics: ClassVar[tuple[str, ...]]
    per_eval_set_metrics: ClassVar[tuple[str, ...]] = ()
    default_objectives: ClassVar[tuple[Objective, ...]]
    families: ClassVar[tuple[str, ...]]
    family_requirement: ClassVar[str]
    default_family: ClassVar[str]
    default_sample_rate: ClassVar[int | None] = None
    teacher_config: ClassVar[type]
    fidelity_config: ClassVar[type[FidelityConfig]]
    sections: ClassVar[Mapping[str, type]] = {}
    embeds: ClassVar[bool] = False
    bundle_files: ClassVar[Mapping[str, Path]] = {}
    sensitivity_data: ClassVar[Callable[[RunConfig], Any] | None] = None

    def metric_names(
        self, targets: Sequence[str], eval_sets: Sequence[str] = (), measured_targets: Sequence[str] = ()
    ) -> list[str]:
        """Every metric a trial reports for these targets and evaluation sets (what objectives may name).

        A measured target (among `targets`) also reports the cost model's latency beside the timing.
        """
        per_set = (f"{key}@{name}" for name in eval_sets for key in self.per_eval_set_metrics)
        per_target = (f"{key}@{target}" for target in targets for key in COST_METRICS)
        predicted = [f"{PREDICTED_LATENCY}@{target}" for target in targets if target in measured_targets]
        first_predicted = [PREDICTED_LATENCY] if targets and targets[0] in measured_targets else []
        return [*self.quality_metrics, *SIZE_METRICS, *per_set, *COST_METRICS, *first_predicted, *per_target, *predicted]

    def eval_set_names(self, data: DataConfig) -> tuple[str, ...]:
        """The evaluation sets whose metrics are reported per set (none unless the task has per-set metrics)."""
        return data.eval_names if self.per_eval_set_metrics else ()

    def run_metric_names(self, config: RunConfig) -> list[str]:
        """Every metric a trial of this run reports."""
        return self.metric_names(config.targets, self.eval_set_names(config.data), config.measured_target_names)

    def check_family(self, family: str) -> None:
        """Raise ValueError when the task cannot compress models of `family`."""
        if family not in self.families:
            raise ValueError(f"model.family={family!r}: task {self.name!r} needs {self.family_requirement}")

    def validate(self, config: RunConfig) -> None:
        """Cross-section checks of a parsed config; ValueError names the key."""

    def fidelity_defaults(self, teacher: Any) -> Mapping[str, Any]:
        """`fidelity:` defaults that depend on the parsed `teacher:` block (the config's keys win).

        A loaded pretrained model is fine-tuned differently from one the engine trained itself
        (no labels, gentler steps); a task without such a difference keeps its class defaults.
        """
        return {}

    @abstractmethod
    def model_spec(self, config: RunConfig) -> ModelSpec:
        """The model the run compresses, with its input format."""

    @abstractmethod
    def setup(self, config: RunConfig) -> Any:
        """The config sections the task's evaluator reads (its `prepare` argument)."""

    @abstractmethod
    def evaluator(self) -> Evaluator:
        """A new evaluator of this task (a subclass may name its evaluator class here)."""

    def check_exportable(self, config: RunConfig) -> None:
        """Raise `TaskExportError` when this run's models cannot become bundles (before any work)."""

    @abstractmethod
    def bundle_signature(self, config: RunConfig, spec: ModelSpec, model: torch.nn.Module) -> Signature:
        """The bundle's front end, inputs and outputs for a model of this run."""

    @abstractmethod
    def quality_interval(self, evaluation: Evaluation, prepared: Any) -> dict[str, float]:
        """Bootstrap interval of the headline metric (and what it was computed over), for the bundle."""

    def decision(self, evaluation: Evaluation, prepared: Any) -> dict[str, Any]:
        """A bundle's `decision` block: how a deployer turns outputs into decisions (none unless the task has one)."""
        return {}

    @abstractmethod
    def evaluation_record(self, config: RunConfig, prepared: Any) -> dict[str, Any]:
        """The task's part of a bundle's `evaluation` record: which test data, how much of it."""

    @abstractmethod
    def summary(self, metrics: Mapping[str, float]) -> str:
        """One line of the headline quality with its interval (what `search export` prints)."""

    @abstractmethod
    def agreement_checks(
        self, bundle: Bundle, session: onnxruntime.InferenceSession, config: RunConfig, progress: Progress | None
    ) -> list[Check]:
        """`search verify`'s checks that PyTorch and onnxruntime agree on the run's test data."""

    card: ClassVar[TaskCard]
    """The model card's task-specific text."""


__all__ = ["BOOTSTRAP_REPLICATES", "CONFIDENCE", "TaskExportError", "Progress", "Signature", "Task", "recorded_check"]
