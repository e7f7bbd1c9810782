"""Parameter sharing across repeated blocks (TinyWASE): one set of weights, used several times.

A family lists its repeated blocks (`model.repeated_blocks()`: ResNet's basic blocks per stage,
ECAPA-TDNN's SE-Res2Blocks, x-vector's frame layers). Within one list, a block whose convolution
and linear layers have the same names and shapes as an earlier block's is tied to that block: its
layers point at the earlier block's weight and bias Parameters. Normalisation layers keep their
own parameters and statistics, because activations change scale from one position to the next
and a norm layer stores a few floats per channel next to a kernel's in-channels x kernel size.

The tie is Parameter identity, so everything downstream finds it from the model alone
(`shared_layers`, `shared_state_keys`): the packed file stores a shared tensor once, the model
description marks the layer `shared_with` its owner, and every use still runs (the cost model
prices its MACs each time).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from spaces.models.layers import QUANTIZABLE_TYPES
from spaces.quant.base import QuantizedWeight


class SharingError(ValueError):
    """Sharing that cannot be done or kept: a family without repeated blocks, a tied layer quantized
    differently from its owner."""


def share_repeated_blocks(model: nn.Module) -> dict[str, str]:
    """Tie the weights of repeated blocks of equal shapes; the first block of each shape keeps its own.

    Returns:
        Tied layer name -> name of the layer that owns the weights.
    """
    repeated_blocks = getattr(model, "repeated_blocks", None)
    if repeated_blocks is None:
        raise SharingError(f"{type(model).__name__} lists no repeated blocks; parameter sharing is undefined for it")
    tied: dict[str, str] = {}
    for blocks in repeated_blocks():
        owners: dict[tuple, str] = {}
        for block in blocks:
            layers = _weight_layers(model.get_submodule(block))
            owner = owners.setdefault(_shape_signature(layers), block)
            if not layers or owner == block:
                continue
            for name, layer in layers.items():
                source = model.get_submodule(f"{owner}.{name}")
                layer.weight = source.weight
                if layer.bias is not None:
                    layer.bias = source.bias
                tied[f"{block}.{name}"] = f"{owner}.{name}"
    return tied


def shared_layers(model: nn.Module) -> dict[str, str]:
    """Quantizable layers whose weight is an earlier layer's: layer name -> owner layer name."""
    first: dict[int, str] = {}
    aliases = {}
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZABLE_TYPES):
            owner = first.setdefault(id(module.weight), name)
            if owner != name:
                aliases[name] = owner
    return aliases


def shared_state_keys(model: nn.Module) -> dict[str, str]:
    """State-dict keys of parameters that are an earlier key's parameter: key -> owner key."""
    first: dict[int, str] = {}
    aliases = {}
    for key, parameter in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(parameter), key)
        if owner != key:
            aliases[key] = owner
    return aliases


def tie_quantized(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> dict[str, QuantizedWeight]:
    """Give every layer that shares its weights the owner's quantized weight (the same object).

    A shared tensor has one set of codes, so a tied layer must be quantized exactly like its
    owner (or not named, and then it follows the owner).
    """
    tied = dict(quantized)
    for alias, owner in shared_layers(model).items():
        if owner not in quantized:
            if alias in quantized:
                raise SharingError(f"layer {alias!r} shares its weights with {owner!r}, which is not quantized")
            continue
        if alias in quantized and _kind(quantized[alias]) != _kind(quantized[owner]):
            raise SharingError(
                f"layer {alias!r} shares its weights with {owner!r} but is quantized as "
                f"{_kind(quantized[alias])} instead of {_kind(quantized[owner])}"
            )
        tied[alias] = quantized[owner]
    return tied


def _weight_layers(block: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in block.named_modules() if isinstance(module, QUANTIZABLE_TYPES)}


def _shape_signature(layers: Mapping[str, nn.Module]) -> tuple:
    return tuple(
        (name, tuple(layer.weight.shape), None if layer.bias is None else tuple(layer.bias.shape))
        for name, layer in layers.items()
    )


def _kind(weight: QuantizedWeight) -> str:
    return f"{weight.bits}-bit {weight.quantizer}"


__all__ = ["SharingError", "share_repeated_blocks", "shared_layers", "shared_state_keys", "tie_quantized"]
