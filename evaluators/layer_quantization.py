"""What quantizing one layer at one (quantizer, bits) choice does: its weight error and its stored bytes.

The sensitivity estimators weigh the error `||Q_b(W) - W||^2` (HAWQ's quantization
perturbation), and the ILP bit allocation (`search.allocation`) prices each choice in bytes of
the packed file. Both need every choice a space offers quantized once, so one pass measures both.

The stored bytes are the layer's own entries of the packed weights file (`spaces.quant.packing`,
whose length is `size_bytes`): the weight (codes and side data, or float32) and its other tensors
(the bias), at the precision `finalize_compressed` stores them with (float16 side data and biases
when the spec's `side_bits` is 16 and the layer is quantized). Entries of one file are written
one after the other without padding, so a model's size is its header, its other tensors and the
sum of these per-layer figures: additive per layer, which is what makes the ILP linear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from spaces.compress import ModelSpec
from spaces.description import FLOAT_BITS
from spaces.plan import stored_quantizer
from spaces.quant import QuantizedWeight, get_quantizer, pack_weights

_EMPTY_FILE_BYTES = len(pack_weights({}))
"""The packed file's header: subtracted to get the bytes a set of entries adds."""


@dataclass(frozen=True, order=True)
class QuantChoice:
    """One way to store a layer: a registered quantizer at a bit width (32 = FP32, quantizer irrelevant)."""

    quantizer: str
    bits: int

    @property
    def key(self) -> str:
        """`uniform:4`: the choice's name in JSON and cache entries."""
        return f"{self.quantizer}:{self.bits}"

    @classmethod
    def parse(cls, key: str) -> QuantChoice:
        quantizer, _, bits = key.rpartition(":")
        return cls(quantizer, int(bits))


@dataclass(frozen=True)
class ChoiceStats:
    """One layer quantized at one choice.

    Attributes:
        perturbation: `||Q_b(W) - W||^2`, summed over the weight's elements.
        stored_bytes: Bytes the layer's entries take in the packed file at this choice.
        overhead_bits: Bits of the quantizer's side data (the description's `overhead_bits`).
    """

    perturbation: float
    stored_bytes: int
    overhead_bits: int


@dataclass(frozen=True)
class LayerStats:
    """A quantizable layer's weight and every choice measured for it.

    Attributes:
        params: Weight elements.
        weight_energy: `||W||^2` (the data-free proxy divides the perturbation by it).
        fp32_bytes: Bytes of the layer's entries when it stays FP32.
        choices: Quantized choices (FP32 is `fp32_bytes` and no perturbation).
    """

    params: int
    weight_energy: float
    fp32_bytes: int
    choices: dict[QuantChoice, ChoiceStats]

    def stats(self, choice: QuantChoice) -> ChoiceStats:
        """The choice's figures; FP32 stores the float weight with no error."""
        if choice.bits == FLOAT_BITS:
            return ChoiceStats(0.0, self.fp32_bytes, 0)
        return self.choices[choice]

    def to_entry(self) -> dict:
        """A cache entry (`evaluators.data.cache.cached_tensors` stores plain numbers and strings)."""
        return {
            "params": self.params,
            "weight_energy": self.weight_energy,
            "fp32_bytes": self.fp32_bytes,
            "choices": {
                choice.key: [stats.perturbation, stats.stored_bytes, stats.overhead_bits]
                for choice, stats in self.choices.items()
            },
        }

    @classmethod
    def from_entry(cls, entry: Mapping) -> LayerStats:
        choices = {
            QuantChoice.parse(key): ChoiceStats(float(error), int(stored), int(overhead))
            for key, (error, stored, overhead) in entry["choices"].items()
        }
        return cls(int(entry["params"]), float(entry["weight_energy"]), int(entry["fp32_bytes"]), choices)


def layer_choice_stats(
    spec: ModelSpec,
    teacher_state: Mapping[str, torch.Tensor],
    choices: Mapping[str, Sequence[QuantChoice]],
    activation_bits: int = FLOAT_BITS,
) -> dict[str, LayerStats]:
    """Quantize every layer at each of its choices once: error, stored bytes and side data.

    Args:
        choices: Layer name -> the choices to measure (FP32 entries are skipped: nothing to quantize).
        activation_bits: The candidates' activation bits: each choice is measured with the
            quantizer a trial stores at them (`spaces.plan.stored_quantizer`).
    """
    model = spec.build()
    model.load_state_dict(teacher_state)
    half = spec.side_bits == 16
    measured = {}
    for layer, layer_choices in choices.items():
        module = model.get_submodule(layer)
        weight = module.weight.detach()
        others = {
            f"{layer}.{name}": tensor.detach()
            for name, tensor in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))
            if name != "weight"
        }
        stats = {}
        for choice in sorted(set(layer_choices)):
            if choice.bits == FLOAT_BITS:
                continue
            family = get_quantizer(stored_quantizer(choice.quantizer, choice.bits, activation_bits))
            quantized = family.quantize(weight, choice.bits)
            if half:
                quantized = quantized.with_half_side(f"layer {layer!r}")
            error = float((family.dequantize(quantized) - weight).pow(2).sum())
            stats[choice] = ChoiceStats(error, _entry_bytes(layer, quantized, others, half), quantized.overhead_bits)
        measured[layer] = LayerStats(
            weight.numel(), float(weight.pow(2).sum()), _entry_bytes(layer, weight, others, False), stats
        )
    return measured


def _entry_bytes(
    layer: str, weight: torch.Tensor | QuantizedWeight, others: Mapping[str, torch.Tensor], half: bool
) -> int:
    """Bytes of the layer's entries in the packed file (its other tensors as float16 when `half`)."""
    entries = {f"{layer}.weight": weight}
    entries.update({key: tensor.to(torch.float16) if half else tensor for key, tensor in others.items()})
    return len(pack_weights(entries)) - _EMPTY_FILE_BYTES


__all__ = ["ChoiceStats", "LayerStats", "QuantChoice", "layer_choice_stats"]
