"""Apply a per-layer quantization assignment to a trained model: the PTQ step of every trial.

The result carries the fake-quantized model (what is evaluated), the packed weights (what would
ship) and the description (what the cost model prices), all from the same codes, so quality,
size and cost always refer to one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from spaces.describe import describe_model
from spaces.description import FLOAT_BITS, ModelDescription
from spaces.models import build_model
from spaces.models.layers import QUANTIZABLE_TYPES
from spaces.plan import LayerQuantization
from spaces.quant import ActivationQuantizer, PackedFileError, QuantizationError, QuantizedWeight, get_quantizer, pack_weights, unpack_weights
from spaces.quant.base import SIDE_BITS, round_to_half
from spaces.quant.integer_activations import (
    ActivationPlacementError,
    ActivationPoint,
    activation_quantizers,
    activation_quantizers_detached,
    attach_stored_activation_quantizers,
    calibration_state_keys,
    quantize_activations,
    stored_activation_points,
    stored_state_keys,
)
from spaces.quant.packing import PackedEntry
from spaces.sharing import share_repeated_blocks, shared_layers, shared_state_keys, tie_quantized


_WEIGHT_LAYER_TYPES = (*QUANTIZABLE_TYPES, nn.LSTM)
"""Layers whose weights are the model's; kept at FP32, all their tensors stay float32."""
_IGNORED_STATE = "num_batches_tracked"
"""Batch-norm counters: training bookkeeping, not stored in the packed file."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: a family name, its keyword arguments and its input format.

    `side_bits` (32 or 16) is how a compressed model of this spec stores its side data: the
    quantizers' scales, zero points and codebooks, the biases of its quantized layers and every
    norm and activation term (`space.side_bits`). Layers kept at FP32 stay float32 either way.
    """

    family: str
    kwargs: dict[str, Any]
    num_mel_bins: int
    frames_per_second: int
    sample_rate: int
    side_bits: int = FLOAT_BITS

    def __post_init__(self) -> None:
        if self.side_bits not in SIDE_BITS:
            raise QuantizationError(f"side_bits={self.side_bits}: expected one of {list(SIDE_BITS)}")

    def build(self) -> nn.Module:
        return build_model(self.family, **self.kwargs)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the model trained from this spec (not how its compressions are stored)."""
        return {key: value for key, value in asdict(self).items() if key != "side_bits"}

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
    With `spec.side_bits` 16 and any layer quantized, the side data is rounded to float16 values
    first (in `model` too) and stored in half the bytes.

    Activation quantizers attached to `model` (`spaces.quant.integer_activations`) must be frozen:
    their steps and signs are packed (as float32, a few scalars: what the exported graph's
    QuantizeLinear takes), and every layer is described with activations at their bits, as the
    runtime that fuses them into integer kernels runs it (`search.bundle_runtime`).
    """
    quantized = tie_quantized(model, quantized)
    activations = activation_quantizers(model)
    activation_bits = _activation_bits(activations)
    half_keys = _half_side_keys(model, quantized) if spec.side_bits == 16 and quantized else set()
    if half_keys:
        quantized = {name: weight.with_half_side(f"layer {name!r}") for name, weight in quantized.items()}
    with torch.no_grad():
        for name, weight in quantized.items():
            model.get_submodule(name).weight.copy_(get_quantizer(weight.quantizer).dequantize(weight))
        state = model.state_dict()
        for key in half_keys:
            state[key].copy_(round_to_half(state[key], key))
    model.eval()
    packed = pack_weights(_packed_entries(model, quantized, half_keys, calibration_state_keys(model)))
    with activation_quantizers_detached(model):  # not layers of the model: described through the layers' bits
        description = describe_model(
            model,
            spec.family,
            spec.example_inputs(model),
            spec.sample_rate,
            weight_bits={name: q.bits for name, q in quantized.items()},
            quantizer={name: q.quantizer for name, q in quantized.items()},
            overhead_bits={name: q.overhead_bits for name, q in quantized.items()},
            shared_with=shared_layers(model),
            side_bits=16 if half_keys else FLOAT_BITS,
        )
    layers = tuple(replace(layer, activation_bits=activation_bits) for layer in description.layers)
    return CompressedModel(model, replace(description, layers=layers, size_bytes=len(packed)), packed)


def with_quantized_activations(
    spec: ModelSpec,
    compressed: CompressedModel,
    layers: Mapping[str, LayerQuantization],
    batches: Sequence[Sequence[torch.Tensor]],
    bits: int,
) -> CompressedModel:
    """A post-training compressed model with `bits`-bit activations, calibrated on the quantized
    weights (`spaces.quant.integer_activations.quantize_activations`) and packed again with their steps.

    Args:
        layers: The model's quantized layers (a `CompressionPlan.layers`).
        batches: Calibration inputs, each one tuple of the model's arguments.
    """
    model = compressed.model
    quantize_activations(model, layers, spec.example_inputs(model), batches, bits)
    return finalize_compressed(spec, model, stored_quantized(unpack_weights(compressed.packed)))


def _activation_bits(activations: Mapping[ActivationPoint, ActivationQuantizer]) -> int:
    """The bits of a model's activation quantizers (FP32 without any), all frozen at one width.

    Raises:
        QuantizationError: A quantizer still calibrating (its step is not final), or several widths.
    """
    calibrating = [str(point) for point, quantizer in activations.items() if quantizer.mode != "quantize"]
    if calibrating:
        raise QuantizationError(f"activation quantizers at {calibrating[:3]} are still calibrating: freeze them before packing")
    widths = sorted({quantizer.bits for quantizer in activations.values()})
    if len(widths) > 1:
        raise QuantizationError(f"activation quantizers of several widths {widths}: a model quantizes its activations at one")
    return widths[0] if widths else FLOAT_BITS


class PackedModelError(ValueError):
    """Packed weights that do not rebuild a model of the given spec; the message says what differs."""


def rebuild_compressed(
    spec: ModelSpec, packed: bytes, share: bool = False, activation_bits: int = FLOAT_BITS
) -> CompressedModel:
    """The compressed model whose packed file is `packed`, rebuilt without the model it came from.

    `spec`'s model gets the unpacked weights and must pack back to the very same bytes, so what is
    returned is exactly the model that was packed: its quality can be measured again, or it can
    be exported, without training it again. Activation quantizers the file stores the steps of go
    back where their names say (`spaces.quant.integer_activations.stored_activation_points`), frozen.

    Args:
        share: Repeated blocks share one set of weights (`spaces.sharing`), as when it was packed.
        activation_bits: Bits of the stored activation quantizers (32: the file must store none).

    Raises:
        PackedModelError: A corrupt file, or weights of another model (names, shapes, sharing).
        ValueError: Model arguments the spec's family rejects.
    """
    try:
        entries = unpack_weights(packed)
    except PackedFileError as error:
        raise PackedModelError(str(error)) from None
    model = spec.build()
    if share:
        share_repeated_blocks(model)
    misfit = f"does not fit the {spec.family} model"
    points = stored_activation_points(entries)
    if points and activation_bits == FLOAT_BITS:
        raise PackedModelError(f"stores activation quantizers (at {points[0]}, ...) but the activations are float (activation_bits 32)")
    try:
        attach_stored_activation_quantizers(model, points, activation_bits)
    except ActivationPlacementError as error:
        raise PackedModelError(f"{misfit}: {error}") from None
    state = {key: get_quantizer(entry.quantizer).dequantize(entry) if isinstance(entry, QuantizedWeight) else entry
             for key, entry in entries.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensors of other shapes
        mismatches = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise PackedModelError(f"{misfit}: {len(mismatches)} tensor(s) of other shapes, e.g. {mismatches[:1]}") from None
    calibration = calibration_state_keys(model)
    missing = [key for key in missing if not key.endswith(_IGNORED_STATE) and key not in calibration]
    if missing or unexpected:
        raise PackedModelError(f"{misfit}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    compressed = finalize_compressed(spec, model, stored_quantized(entries))
    if compressed.packed != packed:
        raise PackedModelError("the rebuilt model does not pack back to the same bytes (shapes or sharing differ)")
    return compressed


def stored_quantized(entries: Mapping[str, PackedEntry]) -> dict[str, QuantizedWeight]:
    """Layer name -> its quantized weight, from a packed file's entries (`unpack_weights`)."""
    return {key.removesuffix(".weight"): entry for key, entry in entries.items() if isinstance(entry, QuantizedWeight)}


def load_packed_model(spec: ModelSpec, packed: bytes) -> nn.Module:
    """Rebuild a model from its packed weights alone (codes dequantized by their own quantizer)."""
    model = spec.build()
    state = {
        key: get_quantizer(entry.quantizer).dequantize(entry) if isinstance(entry, QuantizedWeight) else entry
        for key, entry in unpack_weights(packed).items()
    }
    model.load_state_dict(state, strict=False)
    return model.eval()


def _half_side_keys(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> set[str]:
    """State keys of the side data stored as float16: all but the codes, the FP32 layers' tensors
    and the activation quantizers' state."""
    float_layers = {name for name, module in model.named_modules() if isinstance(module, _WEIGHT_LAYER_TYPES)}
    float_layers -= set(quantized)
    activation_keys = stored_state_keys(model) | calibration_state_keys(model)
    keys = set()
    for key in model.state_dict():
        layer, _, field = key.rpartition(".")
        if key in activation_keys or field == "num_batches_tracked" or layer in float_layers:
            continue
        if not (field == "weight" and layer in quantized):
            keys.add(key)
    return keys


def _packed_entries(
    model: nn.Module, quantized: Mapping[str, QuantizedWeight], half_keys: set[str], skipped: set[str]
) -> dict[str, PackedEntry]:
    """Every tensor inference needs: quantized weights as codes, the rest as float32 (float16 for
    `half_keys`); `skipped` keys are training bookkeeping, like batch norms' counters."""
    entries: dict[str, PackedEntry] = {}
    for key, tensor in model.state_dict().items():
        layer, _, field = key.rpartition(".")
        if field == "num_batches_tracked" or key in skipped:
            continue
        if field == "weight" and layer in quantized:
            entries[key] = quantized[layer]
        else:
            entries[key] = tensor.to(torch.float16) if key in half_keys else tensor
    for key, owner in shared_state_keys(model).items():
        entries[key] = entries[owner]  # the same object: packed once, as an alias
    return entries
