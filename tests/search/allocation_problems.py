"""Small ILP problems for the sampler tests: costs made up from a layer table, no teacher needed."""

from __future__ import annotations

from collections.abc import Mapping

from evaluators.layer_quantization import QuantChoice
from search.allocation import AllocationProblem, Cell, Cost
from spaces.description import FLOAT_BITS


def toy_problem(space, layer_params: Mapping[str, int], sensitivities: Mapping[str, float]) -> AllocationProblem:
    """The ILP over a space without quantizer knobs: damage = sensitivity x 4^-bits, size = params x bits / 8."""
    quantizer = space.config.quantizer
    bits_knobs = {knob: tuple(space.knobs[knob]) for knob in space.groups}
    cells = []
    for knob, layers in space.groups.items():
        for bits in bits_knobs[knob]:
            noise = 0.0 if bits == FLOAT_BITS else 4.0**-bits
            damage = sum(sensitivities.get(layer, 1.0) * noise for layer in layers)
            size = sum(layer_params.get(layer, 1) * bits / 8 for layer in layers)
            cells.append(Cell(knob, None, QuantChoice(quantizer, bits), Cost(damage, size, size * 1e-6)))
    defaults = {knob: values[0] for knob, values in bits_knobs.items()}
    return AllocationProblem(bits_knobs, {}, defaults, tuple(cells), Cost(0.0, 100.0, 0.01))
