"""What every task's evaluator hands back, and the interface the search engine drives.

The engine knows evaluators only through `Evaluator`: `prepare` does the expensive shared work
once (data, features, teacher), and `evaluate_ladder` measures one candidate rung by rung of the
fidelity ladder. Each task implements it in its own module (`evaluators.verification`,
`evaluators.extraction`); tests inject their own implementation instead of patching modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch

from spaces.compress import CompressedModel, ModelSpec
from spaces.description import ModelDescription
from spaces.space import SearchSpace

ProgressCallback = Callable[[str, int, int], None]
"""Called with (stage description, done, total) during long preparation steps."""


@dataclass
class Evaluation:
    """A candidate's quality metrics and the compressed model they were measured on."""

    metrics: dict[str, float]
    compressed: CompressedModel


class Prepared(Protocol):
    """What every task's prepared state offers the engine: the model, its teacher and the space."""

    spec: ModelSpec
    teacher_state: dict[str, torch.Tensor]
    space: SearchSpace


SetupT = TypeVar("SetupT")
PreparedT = TypeVar("PreparedT", bound=Prepared)


class Evaluator(ABC, Generic[SetupT, PreparedT]):
    """Scores compression candidates of one task; stateless, so it is pickled to Ray workers as is.

    `SetupT` is the task's own settings (the config sections it reads, never the whole run
    config); `PreparedT` is what `prepare` computes once per run and workers share.
    """

    @abstractmethod
    def prepare(self, setup: SetupT, progress: ProgressCallback | None = None) -> PreparedT:
        """Data, features and the teacher for the run, from the cache when present."""

    @abstractmethod
    def evaluate_reference(self, prepared: PreparedT) -> Evaluation:
        """The FP32 teacher, scored exactly like a candidate (the reference row)."""

    @abstractmethod
    def evaluate_ladder(self, candidate: Mapping[str, Any], prepared: PreparedT) -> Iterator[tuple[int, Evaluation]]:
        """(cumulative fine-tuning steps, evaluation) after each rung, each rung continuing the previous one."""

    @abstractmethod
    def evaluate_compressed(self, compressed: CompressedModel, prepared: PreparedT) -> Evaluation:
        """An already compressed model (a trial's kept artifact) scored as a rung's model is, without training."""

    def evaluate(self, candidate: Mapping[str, Any], prepared: PreparedT) -> Evaluation:
        """The candidate after the last rung of the fidelity ladder."""
        *_, (_, evaluation) = self.evaluate_ladder(candidate, prepared)
        return evaluation


def size_metrics(description: ModelDescription) -> dict[str, float]:
    """Stored size, parameter count and mean weight bits of a compressed model.

    The mean is over the weights actually stored: a layer that reuses another's weights
    (parameter sharing) adds nothing, as it adds nothing to `size_bytes`.
    """
    layers = [layer for layer in description.layers if layer.params and not layer.shared_with]
    mean_bits = sum(layer.params * layer.weight_bits for layer in layers) / sum(layer.params for layer in layers)
    return {
        "size_bytes": float(description.size_bytes),
        "params": float(description.params),
        "mean_weight_bits": mean_bits,
    }


__all__ = ["Evaluation", "Evaluator", "Prepared", "ProgressCallback", "size_metrics"]
