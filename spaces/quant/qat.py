"""Quantization-aware training of a model's layers: attach fake-quantizers, step them, export codes.

Each quantized layer's weight gets a `FakeQuantizer` as a `torch.nn.utils.parametrize`
parametrization: the module keeps its type and forward, the latent float weight lives at
`<layer>.parametrizations.weight.original` (the same `Parameter` object as before, so an
optimiser that already holds it keeps working) and every access to `<layer>.weight` is quantized.

Which fake-quantizer a family gets:

- uniform family: learned step sizes (`spaces.quant.lsq`, LSQ);
- k-means family: centroid fine-tuning with periodic re-assignment, or TinyWASE's annealed
  soft-step (`spaces.quant.centroid_qat`);
- `binary-adaptive`: learned per-channel levels (`spaces.quant.binary_qat`);
- every other family (`pow2`, `binary`): its own rule re-applied each step with a
  straight-through gradient (`spaces.quant.fake_quant`).

`export_quantized` returns `QuantizedWeight`s in the registered formats, so
`spaces.compress.finalize_compressed(spec, without_fake_quantizers(model), export_quantized(model))`
packs the trained model bit-exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from spaces.plan import LayerQuantization
from spaces.quant import get_quantizer
from spaces.quant.base import QuantizationError, QuantizedWeight
from spaces.quant.binary import AdaptiveBinaryQuantizer
from spaces.quant.binary_qat import LearnedBinaryQuantizer
from spaces.quant.centroid_qat import CentroidQuantizer
from spaces.quant.fake_quant import FakeQuantizer, StraightThroughQuantizer
from spaces.quant.kmeans import KMeansQuantizer
from spaces.quant.lsq import LearnedStepQuantizer
from spaces.quant.uniform import UniformQuantizer


@dataclass(frozen=True)
class QatOptions:
    """Settings of the learned fake-quantizers.

    Attributes:
        reassign_every: Steps between k-means code re-assignments.
        soft_step: K-means layers train through TinyWASE's soft-step instead of hard centroids.
        temperature_start, temperature_end: Soft-step temperature range (relative to level spacing).
    """

    reassign_every: int = 1
    soft_step: bool = False
    temperature_start: float = 0.5
    temperature_end: float = 0.01

    def __post_init__(self) -> None:
        if self.reassign_every < 1:
            raise QuantizationError(f"reassign_every={self.reassign_every}: must be >= 1")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise QuantizationError(
                f"soft-step temperatures start={self.temperature_start}, end={self.temperature_end}: "
                "need 0 < end <= start"
            )


def fake_quantizer(name: str, bits: int, latent: torch.Tensor, options: QatOptions = QatOptions()) -> FakeQuantizer:
    """The trainable fake-quantizer for registered family `name` at `bits`, initialised from `latent`."""
    quantizer = get_quantizer(name)
    if isinstance(quantizer, UniformQuantizer):
        return LearnedStepQuantizer(quantizer, bits, latent)
    if isinstance(quantizer, KMeansQuantizer):
        return CentroidQuantizer(
            quantizer,
            bits,
            latent,
            reassign_every=options.reassign_every,
            soft_step=options.soft_step,
            temperature_start=options.temperature_start,
            temperature_end=options.temperature_end,
        )
    if isinstance(quantizer, AdaptiveBinaryQuantizer):
        return LearnedBinaryQuantizer(quantizer, bits, latent)
    return StraightThroughQuantizer(quantizer, bits)


def attach_fake_quantizers(
    model: nn.Module, layers: Mapping[str, LayerQuantization], options: QatOptions = QatOptions()
) -> list[nn.Parameter]:
    """Quantize the weights of the named layers from now on; returns the fake-quantizers' new parameters.

    Raises:
        QuantizationError: A layer is unknown, already quantized, or its bits are not allowed.
    """
    new_parameters: list[nn.Parameter] = []
    for name, layer in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise QuantizationError(f"unknown layer name {name!r}") from None
        if parametrize.is_parametrized(module, "weight"):
            raise QuantizationError(f"layer {name!r} already has a fake-quantizer")
        quantizer = fake_quantizer(layer.quantizer, layer.bits, module.weight.detach(), options)
        parametrize.register_parametrization(module, "weight", quantizer)
        new_parameters.extend(quantizer.parameters())
    return new_parameters


def fake_quantized_layers(model: nn.Module) -> dict[str, FakeQuantizer]:
    """Layer name -> its fake-quantizer, for every layer that has one."""
    return {
        name: module.parametrizations.weight[0]
        for name, module in model.named_modules()
        if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], FakeQuantizer)
    }


def after_step(model: nn.Module, step: int, anneal: float) -> None:
    """Run every fake-quantizer's per-step hook (re-assignment, annealing)."""
    for name, quantizer in fake_quantized_layers(model).items():
        quantizer.after_step(_latent(model, name), step, anneal)


def export_quantized(model: nn.Module) -> dict[str, QuantizedWeight]:
    """Codes and side tensors of every fake-quantized layer, in its family's packed format."""
    return {name: quantizer.export(_latent(model, name)) for name, quantizer in fake_quantized_layers(model).items()}


def without_fake_quantizers(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose layers hold their latent float weights as plain parameters.

    Each layer's parameters are put back in their original order (weight first, as convolutions
    and linear layers register it), so the copy's state dict, and the packed file written from
    it, is ordered exactly like that of a model that never had fake-quantizers.
    """
    plain = copy.deepcopy(model)
    for name in fake_quantized_layers(plain):
        module = plain.get_submodule(name)
        # A deep copy shares the generated Parametrized* class with the original, and removing a
        # parametrization deletes the property from that class: give the copy a class of its own
        # first, or `model` loses its `weight` and cannot be trained further.
        parametrized = type(module)
        module.__class__ = type(parametrized.__name__, parametrized.__bases__, dict(parametrized.__dict__))
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        for key, parameter in list(module.named_parameters(recurse=False)):
            if key != "weight":
                delattr(module, key)
                module.register_parameter(key, parameter)
    return plain


def _latent(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_submodule(name).parametrizations.weight.original


__all__ = [
    "FakeQuantizer",
    "QatOptions",
    "after_step",
    "attach_fake_quantizers",
    "export_quantized",
    "fake_quantized_layers",
    "fake_quantizer",
    "without_fake_quantizers",
]
