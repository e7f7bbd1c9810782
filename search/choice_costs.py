"""Price every knob choice of a space for the ILP: damage, packed bytes and cost-model latency per cell.

A cell (`search.allocation.Cell`) is the layers of one bits knob whose quantizer one quantizer
knob sets, at one (quantizer, bits) choice. Its cost is summed over those layers:

- damage: the sensitivity table's entry (`evaluators.sensitivity_estimators`);
- bytes: the layer's own packed entries at the choice minus at FP32
  (`evaluators.layer_quantization`);
- latency: the layer's cost-model latency at the choice minus at FP32, from the description of
  the teacher with every layer at that choice (`spaces.describe`, `hwcost.estimator`: a layer's
  latency depends on its own description only).

The constant part is measured, not modelled: the anchor candidate (every bits knob at its widest
quantized width, quantizer knobs at their defaults) is compressed for real, and `base` is its
packed size and latency minus its cells. Every candidate with at least one quantized layer then
has its size predicted to the byte: with `space.side_bits: 16` the norm terms are stored as
float16 as soon as one layer is quantized, which the anchor includes; only the all-FP32 candidate
is predicted a little small.

What the ILP does not model: knobs that a `when:` condition switches off are priced as if present,
and value knobs (activation bits, students, sharing) stay at their defaults. A space whose default
candidate trains a student has teacher layers the student does not keep, so it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from evaluators.layer_quantization import LayerStats, QuantChoice
from evaluators.sensitivity_estimators import SensitivityTable
from evaluators.student_training import trains_student
from hwcost import CostModel
from search.allocation import AllocationProblem, Cell, Cost
from search.candidate_sequences import bits_choices, candidate_of
from spaces.compress import ModelSpec, compress
from spaces.describe import describe_model
from spaces.description import FLOAT_BITS
from spaces.knobs import BITS, QUANTIZER
from spaces.quant import QUANTIZERS
from spaces.sharing import shared_layers
from spaces.space import SearchSpace


class AllocationUnavailable(ValueError):
    """A space the ILP cannot price (its default candidate trains a student)."""


def layer_choices(space: SearchSpace) -> dict[str, tuple[QuantChoice, ...]]:
    """Every quantized (quantizer, bits) choice each bits-knob layer can take in `space`, in forward order."""
    choices = {}
    for knob in _knobs(space, BITS):
        widths = bits_choices(space, knob.name)
        for layer in knob.layers:
            choices[layer] = tuple(
                QuantChoice(quantizer, bits)
                for quantizer in _quantizers(space, layer)
                for bits in widths
                if bits != FLOAT_BITS and bits in QUANTIZERS[quantizer].allowed_bits
            )
    return {layer: choices[layer] for layer in space.layers if layer in choices}


def allocation_problem(
    space: SearchSpace,
    spec: ModelSpec,
    teacher_state: Mapping[str, torch.Tensor],
    table: SensitivityTable,
    stats: Mapping[str, LayerStats],
    target: str,
) -> AllocationProblem:
    """The ILP over `space`'s bits and quantizer knobs, priced on `target` (see the module docstring).

    Args:
        table: Damage per layer and choice (covering `layer_choices(space)`).
        stats: Stored bytes per layer and choice (`layer_choice_stats` of the same choices).

    Raises:
        AllocationUnavailable: The space's default candidate trains a student.
    """
    check_priceable(space)
    latency = _layer_latencies(spec, teacher_state, stats, target)
    bits_knobs = {knob.name: bits_choices(space, knob.name) for knob in _knobs(space, BITS)}
    quantizer_knobs = {knob.name: tuple(knob.domain) for knob in _knobs(space, QUANTIZER)}
    defaults = {knob.name: knob.default for knob in (*_knobs(space, BITS), *_knobs(space, QUANTIZER))}

    def layer_cost(layer: str, choice: QuantChoice) -> Cost:
        if choice.bits == FLOAT_BITS:
            return Cost()
        return Cost(
            table.damage(layer, choice),
            stats[layer].stats(choice).stored_bytes - stats[layer].fp32_bytes,
            latency[choice].get(layer, 0.0) - latency[None].get(layer, 0.0),
        )

    cells = []
    for knob in _knobs(space, BITS):
        units: dict[str | None, list[str]] = {}
        for layer in knob.layers:
            units.setdefault(space.quantizer_knob_of(layer), []).append(layer)
        for quantizer_knob, layers in units.items():
            for quantizer in _quantizers(space, layers[0]):
                for bits in bits_knobs[knob.name]:
                    if bits != FLOAT_BITS and bits not in QUANTIZERS[quantizer].allowed_bits:
                        continue
                    choice = QuantChoice(quantizer, bits)
                    cost = sum((layer_cost(layer, choice) for layer in layers), Cost())
                    cells.append(Cell(knob.name, quantizer_knob, choice, cost))
    problem = AllocationProblem(bits_knobs, quantizer_knobs, defaults, tuple(cells))
    anchor = _anchor(problem)
    measured = _measured_cost(space, spec, teacher_state, candidate_of(space, anchor), target)
    predicted = problem.cost(anchor)
    base = Cost(0.0, measured.size_bytes - predicted.size_bytes, measured.latency_ms - predicted.latency_ms)
    return AllocationProblem(bits_knobs, quantizer_knobs, defaults, tuple(cells), base)


def check_priceable(space: SearchSpace) -> None:
    """Raise `AllocationUnavailable` before any work when the space's default candidate trains a student."""
    candidate = candidate_of(space, {})
    if candidate is not None and trains_student(space.plan(candidate)):
        raise AllocationUnavailable(
            "the space's default candidate trains a student (student, distill or share knobs); "
            "the ILP prices the teacher's own layers"
        )


def _knobs(space: SearchSpace, role: str) -> list[Any]:
    return [knob for knob in space.compiled_knobs if knob.role == role]


def _quantizers(space: SearchSpace, layer: str) -> tuple[str, ...]:
    """The quantizers a layer may use: its quantizer knob's choices, or the space's default."""
    owner = space.quantizer_knob_of(layer)
    if owner is None:
        return (space.config.quantizer,)
    return next(tuple(knob.domain) for knob in space.compiled_knobs if knob.name == owner)


def _anchor(problem: AllocationProblem) -> dict[str, Any]:
    """Quantizer knobs at their defaults, each bits knob at its widest quantized width they allow."""
    assignment: dict[str, Any] = {knob: problem.defaults[knob] for knob in problem.quantizer_knobs}
    for knob, widths in problem.bits_knobs.items():
        fitting = [bits for bits in widths if _allowed_everywhere(problem, knob, bits, assignment)]
        if not fitting:
            raise AllocationUnavailable(f"{knob}: no width fits the default quantizers")
        quantized = [bits for bits in fitting if bits != FLOAT_BITS]
        assignment[knob] = max(quantized) if quantized else FLOAT_BITS
    return assignment


def _allowed_everywhere(problem: AllocationProblem, knob: str, bits: int, assignment: Mapping[str, Any]) -> bool:
    """Whether every unit of the bits knob has a cell at `bits` under the assignment's quantizers."""
    units: dict[str | None, bool] = {}
    for cell in problem.cells:
        if cell.bits_knob != knob:
            continue
        chosen = cell.quantizer_knob is None or cell.choice.quantizer == assignment[cell.quantizer_knob]
        units[cell.quantizer_knob] = units.get(cell.quantizer_knob, False) or (chosen and cell.choice.bits == bits)
    return all(units.values())


def _measured_cost(
    space: SearchSpace, spec: ModelSpec, teacher_state: Mapping[str, torch.Tensor], candidate: Any, target: str
) -> Cost:
    """Packed size and cost-model latency of a candidate, compressed for real (post-training)."""
    if candidate is None:
        raise AllocationUnavailable("the space rejects its own anchor candidate (widest quantized bits, default quantizers)")
    plan = space.plan(candidate)
    compressed = compress(spec, teacher_state, plan.layer_bits, plan.layer_quantizers)
    estimate = CostModel().estimate(compressed.description, target)
    return Cost(0.0, float(compressed.description.size_bytes), estimate.latency_ms)


def _layer_latencies(
    spec: ModelSpec, teacher_state: Mapping[str, torch.Tensor], stats: Mapping[str, LayerStats], target: str
) -> dict[QuantChoice | None, dict[str, float]]:
    """Each layer's latency per quantized choice (every layer that can take it at it), and at FP32 (key None).

    The descriptions use the spec's side precision throughout, as a model with a quantized layer
    stores its norm terms; a layer's latency depends on its own description only.
    """
    model = spec.build()
    model.load_state_dict(teacher_state)
    cost_model = CostModel()
    latencies: dict[QuantChoice | None, dict[str, float]] = {}
    for choice in [None, *sorted({choice for layer in stats.values() for choice in layer.choices})]:
        layers = {name: layer for name, layer in stats.items() if choice in layer.choices}
        description = describe_model(
            model,
            spec.family,
            spec.example_inputs(model),
            spec.sample_rate,
            weight_bits={name: choice.bits for name in layers} if choice else {},
            quantizer=choice.quantizer if choice else {},
            overhead_bits={name: layer.choices[choice].overhead_bits for name, layer in layers.items()},
            shared_with=shared_layers(model),
            side_bits=spec.side_bits,
        )
        per_layer: dict[str, float] = {}
        for layer_cost in cost_model.estimate(description, target).layers:
            per_layer[layer_cost.name] = per_layer.get(layer_cost.name, 0.0) + layer_cost.latency_ms
        latencies[choice] = per_layer
    return latencies


__all__ = ["AllocationUnavailable", "allocation_problem", "check_priceable", "layer_choices"]
