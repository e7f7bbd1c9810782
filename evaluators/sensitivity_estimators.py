"""Per-layer sensitivity estimators behind one interface: the predicted damage of every (quantizer, bits) choice.

A sensitivity table says, for each quantizable layer and each choice a space offers it, how much
quantizing that layer alone at that choice hurts the model (its "damage"). The ILP bit allocation
(`search.allocation`) minimises the summed damage under size and latency budgets, and the
quality predictor (`search.predictor`) uses the sum as its prior, so every estimator answers the
same question and they can be swapped by name (`ESTIMATORS`; a run's `search.sensitivity` block, or
`search sensitivity --estimator`):

- `hessian` (HAWQ-V2/V3): damage = Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2, the second-order term
  of the loss around the trained weights, with the trace from Hutchinson's estimator
  (`evaluators.hutchinson`) on a few batches. The loss is the fine-tuning loss: the task loss
  (AAM-softmax on the speaker labels) where labels exist, plus or else the distillation loss to
  the FP32 teacher's embeddings.
- `loss-increase`: the fine-tuning loss measured with the layer quantized at the choice
  (`evaluators.sensitivity.layer_sensitivities`, what MSFT and `sensitivity-greedy` use), once per
  choice: exact for one layer alone, but one forward pass per layer and choice.
- `perturbation`: no data; the relative error ||Q_b(W) - W||^2 / ||W||^2. A convolution
  followed by batch norm is scale invariant, so its loss curvature scales as 1 / ||W||^2 and the
  relative error is what the Hessian term reduces to when every layer's normalised curvature is
  taken to be equal.

Damage is clamped at 0: a negative curvature estimate (the loss is not at a minimum of every
direction) or a lucky loss decrease must not make the allocation prefer quantizing a layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from evaluators.hutchinson import hutchinson_traces
from evaluators.layer_quantization import LayerStats, QuantChoice
from evaluators.sensitivity import layer_sensitivities
from spaces.compress import ModelSpec
from spaces.description import FLOAT_BITS

SensitivityLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model outputs, labels, FP32 teacher outputs) -> scalar loss: `evaluators.finetune_loss.FineTuneLoss`."""


@dataclass(frozen=True)
class DataRequest:
    """The batches a data-driven estimator measures on: `batches` of `batch_size` crops drawn with `seed`."""

    batches: int
    batch_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batches < 1 or self.batch_size < 1:
            raise ValueError(f"sensitivity data: batches={self.batches}, batch_size={self.batch_size}; both must be >= 1")


@dataclass(frozen=True)
class SensitivityData:
    """Batches and the loss the data-driven estimators measure.

    Attributes:
        batches: (inputs, labels) per batch; inputs are what the model takes (filterbank crops).
        loss: The loss of the model's outputs given the labels and the FP32 teacher's outputs.
        identity: What the batches and the loss are drawn from (a content hash; part of the cache key).
    """

    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    loss: SensitivityLoss
    identity: str


@dataclass(frozen=True)
class SensitivityProblem:
    """What an estimator may use: the teacher, the layers with their measured choices, and data.

    Attributes:
        spec, teacher_state: The FP32 teacher.
        layers: Per quantizable layer, its weight and the error and bytes of each choice
            (`evaluators.layer_quantization.layer_choice_stats`).
        data: Batches and loss; None for a data-free estimator.
    """

    spec: ModelSpec
    teacher_state: Mapping[str, torch.Tensor]
    layers: Mapping[str, LayerStats]
    data: SensitivityData | None = None


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's estimated damage per choice.

    Attributes:
        params: Weight elements.
        curvature: What the perturbation is weighted by (Tr(H)/n for `hessian`, 1/||W||^2 for
            `perturbation`); None when the damage is measured directly (`loss-increase`).
        damage: Choice -> predicted loss increase with this layer alone quantized at it.
        perturbation: Choice -> ||Q_b(W) - W||^2.
    """

    params: int
    curvature: float | None
    damage: dict[QuantChoice, float]
    perturbation: dict[QuantChoice, float]


@dataclass(frozen=True)
class SensitivityTable:
    """An estimator's damage for every layer and choice of one teacher (what is cached and printed).

    Attributes:
        estimator: The estimator's registered name.
        settings: Its settings (probes, batches...), as they entered the cache key.
        layers: Layer name -> its sensitivity, in forward order.
    """

    estimator: str
    settings: dict[str, Any]
    layers: dict[str, LayerSensitivity]

    def damage(self, layer: str, choice: QuantChoice) -> float:
        """The layer's damage at `choice` (0 at FP32)."""
        return 0.0 if choice.bits == FLOAT_BITS else self.layers[layer].damage[choice]

    def choices(self) -> list[QuantChoice]:
        """Every quantized choice some layer has, in quantizer then bits order."""
        return sorted({choice for layer in self.layers.values() for choice in layer.damage})

    def to_entry(self) -> dict[str, Any]:
        """Plain data: a cache entry (`cached_tensors`) and the JSON `search sensitivity` writes."""
        return {
            "estimator": self.estimator,
            "settings": dict(self.settings),
            "layers": {
                name: {
                    "params": layer.params,
                    "curvature": layer.curvature,
                    "damage": {choice.key: value for choice, value in layer.damage.items()},
                    "perturbation": {choice.key: value for choice, value in layer.perturbation.items()},
                }
                for name, layer in self.layers.items()
            },
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> SensitivityTable:
        layers = {
            name: LayerSensitivity(
                int(layer["params"]),
                None if layer["curvature"] is None else float(layer["curvature"]),
                {QuantChoice.parse(key): float(value) for key, value in layer["damage"].items()},
                {QuantChoice.parse(key): float(value) for key, value in layer["perturbation"].items()},
            )
            for name, layer in entry["layers"].items()
        }
        return cls(str(entry["estimator"]), dict(entry["settings"]), layers)


class SensitivityEstimator(ABC):
    """Estimates every layer's damage per choice; subclasses are frozen dataclasses of their settings.

    Class attributes:
        name: The registered name (`--estimator`).
        help: One line for the command's help.
    """

    name: ClassVar[str]
    help: ClassVar[str]

    @property
    def data_request(self) -> DataRequest | None:
        """The batches it needs, or None when it needs no data."""
        return None

    def settings(self) -> dict[str, Any]:
        """Its settings, as they enter the cache key and the saved table."""
        return asdict(self)  # type: ignore[call-overload]

    def table(self, problem: SensitivityProblem) -> SensitivityTable:
        """The estimator's table for `problem` (data must be given when `data_request` is not None)."""
        if self.data_request is not None and problem.data is None:
            raise ValueError(f"sensitivity estimator {self.name!r} needs data batches and a loss")
        return SensitivityTable(self.name, self.settings(), self.estimate(problem))

    def to_config(self) -> dict[str, Any]:
        """The `search.sensitivity:` block that selects this estimator with these settings."""
        return {"estimator": self.name, **self.settings()}

    @abstractmethod
    def estimate(self, problem: SensitivityProblem) -> dict[str, LayerSensitivity]:
        """Layer name -> its damage per choice, for every layer of `problem.layers`."""


class BatchedEstimator(SensitivityEstimator):
    """An estimator measured on batches; its `batches`, `batch_size` and `seed` settings say which.

    The data-driven estimators share these three settings and what they mean, so the request and
    its checks are written once; each subclass declares the fields with its own defaults.
    """

    batches: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        _at_least_one(self, "batches", "batch_size")

    @property
    def data_request(self) -> DataRequest:
        return DataRequest(self.batches, self.batch_size, self.seed)


def _at_least_one(estimator: SensitivityEstimator, *settings: str) -> None:
    """Raise ValueError naming the first of `settings` below 1 (a config error names its block)."""
    for setting in settings:
        value = getattr(estimator, setting)
        if value < 1:
            raise ValueError(f"{setting}={value}: must be >= 1 (sensitivity estimator {estimator.name!r})")


def _weighted(stats: LayerStats, curvature: float) -> LayerSensitivity:
    """Damage = curvature * perturbation for every measured choice."""
    perturbation = {choice: choice_stats.perturbation for choice, choice_stats in stats.choices.items()}
    damage = {choice: max(0.0, curvature * error) for choice, error in perturbation.items()}
    return LayerSensitivity(stats.params, curvature, damage, perturbation)


def _teacher(problem: SensitivityProblem) -> nn.Module:
    model = problem.spec.build()
    model.load_state_dict(problem.teacher_state)
    return model.eval()


@dataclass(frozen=True)
class PerturbationEstimator(SensitivityEstimator):
    """Data-free proxy: relative quantization error ||Q_b(W) - W||^2 / ||W||^2."""

    name: ClassVar[str] = "perturbation"
    help: ClassVar[str] = "data-free: relative weight error ||Q(W) - W||^2 / ||W||^2 (no batches, seconds)"

    def estimate(self, problem: SensitivityProblem) -> dict[str, LayerSensitivity]:
        return {
            layer: _weighted(stats, 1.0 / stats.weight_energy if stats.weight_energy > 0 else 0.0)
            for layer, stats in problem.layers.items()
        }


@dataclass(frozen=True)
class HessianTraceEstimator(BatchedEstimator):
    """HAWQ-V2/V3: average Hessian trace per weight (Hutchinson) times the quantization error."""

    name: ClassVar[str] = "hessian"
    help: ClassVar[str] = "HAWQ: Hutchinson Hessian trace / params x ||Q(W) - W||^2 (probes x batches backward passes)"
    probes: int = 4
    batches: int = 2
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least_one(self, "probes")

    def estimate(self, problem: SensitivityProblem) -> dict[str, LayerSensitivity]:
        assert problem.data is not None
        model = _teacher(problem)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        weights = {layer: model.get_submodule(layer).weight for layer in problem.layers}
        for weight in weights.values():
            weight.requires_grad_(True)
        losses = []
        for inputs, labels in problem.data.batches:
            with torch.no_grad():
                teacher_outputs = model(inputs)
            losses.append(lambda x=inputs, y=labels, t=teacher_outputs: problem.data.loss(model(x), y, t))
        traces = hutchinson_traces(weights, losses, self.probes, torch.Generator().manual_seed(self.seed))
        return {layer: _weighted(stats, traces[layer] / stats.params) for layer, stats in problem.layers.items()}


@dataclass(frozen=True)
class LossIncreaseEstimator(BatchedEstimator):
    """The fine-tuning loss increase with the layer alone quantized at each choice (measured, not modelled)."""

    name: ClassVar[str] = "loss-increase"
    help: ClassVar[str] = "measured loss increase with one layer quantized, per layer and choice (one forward pass each)"
    batches: int = 1
    batch_size: int = 256
    seed: int = 0

    def estimate(self, problem: SensitivityProblem) -> dict[str, LayerSensitivity]:
        assert problem.data is not None
        inputs = torch.cat([batch for batch, _ in problem.data.batches])
        labels = torch.cat([batch_labels for _, batch_labels in problem.data.batches])
        choices = sorted({choice for stats in problem.layers.values() for choice in stats.choices})
        measured = {
            choice: layer_sensitivities(
                problem.spec, dict(problem.teacher_state), problem.data.loss, inputs, labels, choice.quantizer, choice.bits
            )
            for choice in choices
        }
        return {
            layer: LayerSensitivity(
                stats.params,
                None,
                {choice: max(0.0, measured[choice][layer]) for choice in stats.choices},
                {choice: choice_stats.perturbation for choice, choice_stats in stats.choices.items()},
            )
            for layer, stats in problem.layers.items()
        }


ESTIMATORS: dict[str, SensitivityEstimator] = {
    estimator.name: estimator
    for estimator in (HessianTraceEstimator(), LossIncreaseEstimator(), PerturbationEstimator())
}
"""Every estimator by name, with its default settings."""
DEFAULT_ESTIMATOR = "hessian"
DATA_FREE_ESTIMATOR = "perturbation"
"""Used where a task offers no batches to measure on."""


def get_estimator(name: str) -> SensitivityEstimator:
    """The registered estimator called `name`.

    Raises:
        ValueError: No estimator has that name; the message lists the available ones.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"sensitivity estimator {name!r}: unknown; available: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


__all__ = [
    "DATA_FREE_ESTIMATOR",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "BatchedEstimator",
    "DataRequest",
    "HessianTraceEstimator",
    "LayerSensitivity",
    "LossIncreaseEstimator",
    "PerturbationEstimator",
    "SensitivityData",
    "SensitivityEstimator",
    "SensitivityProblem",
    "SensitivityTable",
    "get_estimator",
]
