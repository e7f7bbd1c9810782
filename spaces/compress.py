"""Apply a per-layer quantization assignment to a trained model: the PTQ step of every trial.

The result carries the fake-quantized model (what is evaluated), the packed weights (what would
ship) and the description (what the cost model prices), all from the same codes, so quality,
size and cost always refer to one model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from spaces.describe import describe_model
from spaces.description import FLOAT_BITS, ModelDescription
from spaces.models import build_model
from spaces.models.layers import QUANTIZABLE_TYPES
from spaces.quant import QuantizationError, QuantizedWeight, get_quantizer, pack_weights, unpack_weights
from spaces.quant.packing import PackedEntry
from spaces.sharing import shared_layers, shared_state_keys, tie_quantized


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: a family name, its keyword arguments and its input format."""

    family: str
    kwargs: dict[str, Any]
    num_mel_bins: int
    frames_per_second: int
    sample_rate: int

    def build(self) -> nn.Module:
        return build_model(self.family, **self.kwargs)

    def one_second_input(self) -> torch.Tensor:
        return torch.zeros(1, self.frames_per_second, self.num_mel_bins)

    def example_inputs(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        """One second of input for `model`: its own `example_inputs(sample_rate)` when it takes raw
        audio (the extractor: mixture and enrollment), else one second of filterbank frames."""
        hook = getattr(model, "example_inputs", None)
        return hook(self.sample_rate) if hook is not None else (self.one_second_input(),)


@dataclass
class CompressedModel:
    """A quantized model with its packed file and its description (size_bytes = packed length)."""

    model: nn.Module
    description: ModelDescription
    packed: bytes


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose weights may be quantized (convolutions and linear layers)."""
    return [name for name, module in model.named_modules() if isinstance(module, QUANTIZABLE_TYPES)]


def compress(
    spec: ModelSpec,
    state_dict: Mapping[str, torch.Tensor],
    layer_bits: Mapping[str, int],
    quantizer: str | Mapping[str, str] = "uniform",
) -> CompressedModel:
    """Quantize the named layers of a model loaded from `state_dict` (post-training).

    Args:
        layer_bits: Bits per quantizable layer name; 32 (or absent) keeps the layer FP32.
        quantizer: Name of a registered quantizer family, for every layer or per layer name.
    """
    model = spec.build()
    model.load_state_dict(state_dict)
    known = set(quantizable_layers(model))
    unknown = sorted(set(layer_bits) - known)
    if unknown:
        raise QuantizationError(f"unknown layer names {unknown}; quantizable layers: {sorted(known)}")
    quantized: dict[str, QuantizedWeight] = {}
    for name, bits in layer_bits.items():
        if bits == FLOAT_BITS:
            continue
        family = get_quantizer(quantizer if isinstance(quantizer, str) else quantizer[name])
        quantized[name] = family.quantize(model.get_submodule(name).weight, bits)
    return finalize_compressed(spec, model, quantized)


def finalize_compressed(spec: ModelSpec, model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> CompressedModel:
    """Load the dequantized codes into `model`, pack and describe it (after PTQ or QAT alike).

    The weights of the returned model are exactly what unpacking the file gives, so quality is
    measured on the model that ships. Weights shared between layers are packed and counted once.
    """
    quantized = tie_quantized(model, quantized)
    with torch.no_grad():
        for name, weight in quantized.items():
            model.get_submodule(name).weight.copy_(get_quantizer(weight.quantizer).dequantize(weight))
    model.eval()
    packed = pack_weights(_packed_entries(model, quantized))
    description = describe_model(
        model,
        spec.family,
        spec.example_inputs(model),
        spec.sample_rate,
        weight_bits={name: q.bits for name, q in quantized.items()},
        quantizer={name: q.quantizer for name, q in quantized.items()},
        overhead_bits={name: q.overhead_bits for name, q in quantized.items()},
        shared_with=shared_layers(model),
    )
    return CompressedModel(model, replace(description, size_bytes=len(packed)), packed)


def load_packed_model(spec: ModelSpec, packed: bytes) -> nn.Module:
    """Rebuild a model from its packed weights alone (codes dequantized by their own quantizer)."""
    model = spec.build()
    state = {
        key: get_quantizer(entry.quantizer).dequantize(entry) if isinstance(entry, QuantizedWeight) else entry
        for key, entry in unpack_weights(packed).items()
    }
    model.load_state_dict(state, strict=False)
    return model.eval()


def _packed_entries(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> dict[str, PackedEntry]:
    """Every tensor inference needs: quantized weights as codes, the rest as float32."""
    entries: dict[str, PackedEntry] = {}
    for key, tensor in model.state_dict().items():
        layer, _, field = key.rpartition(".")
        if field == "num_batches_tracked":
            continue
        entries[key] = quantized[layer] if field == "weight" and layer in quantized else tensor
    for key, owner in shared_state_keys(model).items():
        entries[key] = entries[owner]  # the same object: packed once, as an alias
    return entries
