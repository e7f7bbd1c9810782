"""Quantization-aware training of a model's layers: attach fake-quantizers, step them, export codes.

Each quantized layer's weight gets a `FakeQuantizer` as a `torch.nn.utils.parametrize`
parametrization: the module keeps its type and forward, the latent float weight lives at
`<layer>.parametrizations.weight.original` (the same `Parameter` object as before, so an
optimiser that already holds it keeps working) and every access to `<layer>.weight` is quantized.

Each family chooses its own fake-quantizer (`Quantizer.fake_quantizer`): learned step sizes for
the uniform family (`spaces.quant.lsq`, LSQ), centroid fine-tuning or TinyWASE's annealed
soft-step for k-means (`spaces.quant.centroid_qat`), learned levels for `binary-adaptive`
(`spaces.quant.binary_qat`), and by default its own rule re-applied each step with a
straight-through gradient (`spaces.quant.fake_quant`).

`export_quantized` returns `QuantizedWeight`s in the registered formats, so
`spaces.compress.finalize_compressed(spec, without_fake_quantizers(model), export_quantized(model))`
packs the trained model bit-exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from spaces.plan import LayerQuantization
from spaces.quant import get_quantizer
from spaces.quant.base import FakeQuantizer, QatOptions, QuantizationError, QuantizedWeight


def fake_quantizer(name: str, bits: int, latent: torch.Tensor, options: QatOptions = QatOptions()) -> FakeQuantizer:
    """The trainable fake-quantizer the registered family `name` gives at `bits`, initialised from `latent`."""
    return get_quantizer(name).fake_quantizer(bits, latent, options)


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
        _picklable(module)
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
        _remove_fake_quantizer(plain.get_submodule(name))
    return plain


def _remove_fake_quantizer(module: nn.Module) -> None:
    """Put `module`'s latent weight back as its plain `weight` parameter, in its original place."""
    # A deep copy shares the generated Parametrized* class with the original, and removing a
    # parametrization deletes the property from that class: give the module a class of its own
    # first, or the original loses its `weight` and cannot be trained further.
    parametrized = type(module)
    module.__class__ = type(parametrized.__name__, parametrized.__bases__, dict(parametrized.__dict__))
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    for key, parameter in list(module.named_parameters(recurse=False)):
        if key != "weight":
            delattr(module, key)
            module.register_parameter(key, parameter)


def _picklable(module: nn.Module) -> None:
    """Let a fake-quantized layer pickle (torch refuses to pickle parametrized modules).

    Ray ships models between processes with pickle: the layer is pickled as its plain copy plus
    its fake-quantizers, and unpickling attaches them again (the latent weight, the quantizers'
    learned parameters and the forward pass are all restored).
    """
    type(module).__reduce_ex__ = _reduce_fake_quantized


def _reduce_fake_quantized(module: nn.Module, protocol: int) -> tuple:
    plain = copy.deepcopy(module)
    quantizers = list(plain.parametrizations.weight)
    _remove_fake_quantizer(plain)
    return _reattached, (plain, quantizers)


def _reattached(plain: nn.Module, quantizers: list[FakeQuantizer]) -> nn.Module:
    for quantizer in quantizers:
        parametrize.register_parametrization(plain, "weight", quantizer, unsafe=True)
    _picklable(plain)
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
