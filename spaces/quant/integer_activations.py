"""Where a model's activations are quantized so that onnxruntime runs its layers on integer kernels.

onnxruntime fuses a convolution or linear layer into an integer kernel (QLinearConv, QGemm) only
when its input comes from a DequantizeLinear and its output goes straight to a QuantizeLinear
(after the batch norm folded into it, and a ReLU, which a uint8 output with zero point 0
absorbs), and a residual sum into QLinearAdd only when both inputs and the output are quantized.
The exported graph has a QuantizeLinear/DequantizeLinear pair exactly where the in-run model has
an `ActivationQuantizer`, so these points are where the in-run model quantizes, no more:

- the input of every integer layer and both inputs of every residual `Add`;
- the output of every integer layer and `Add`, taken after the batch norm right after the layer
  and the ReLU right after either (conv -> BN -> ReLU -> point; a TDNN block's conv -> ReLU ->
  point -> BN, whose norm stays float).

A point is a tensor, not an edge: its quantizer goes on the module that produced the tensor (a
forward hook, so that every reader sees the quantized values, as every reader of the graph's
DequantizeLinear does), or, for a tensor no module produced (a transpose, a split), on the input
of the module that reads it (a forward pre-hook). `activation_points` finds them from one
forward pass that records which innermost module produced and read each tensor.

The quantizers are submodules of the modules they hook (`activation_output`,
`activation_inputs.<argument>`), so they train, save and export with the model. A frozen
quantizer is its `step` and `signed` state alone (`STORED_STATE`): the packed weights file keeps
those two under the quantizer's path, and the path says where the quantizer goes
(`stored_activation_points`), so a model is rebuilt from its packed file without tracing it again
(`attach_stored_activation_quantizers`). The observed range and the frozen flag are calibration
bookkeeping (`calibration_state_keys`), dropped like a batch norm's counter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from spaces.models.layers import Add
from spaces.plan import LayerQuantization
from spaces.quant import INTEGER_ACTIVATION_BITS, ActivationQuantizer, QuantizationError, get_quantizer

INTEGER_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Layers onnxruntime fuses into integer kernels (a transposed convolution stays float)."""
_FOLDED_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
"""Norms right after a layer that export folds into its weights and bias."""
_ABSORBED_ACTIVATIONS = (nn.ReLU,)
"""Activations a uint8 output quantizer with zero point 0 absorbs."""
_OUTPUT_QUANTIZER = "activation_output"
_INPUT_QUANTIZERS = "activation_inputs"
_PARAMETRIZATIONS = "parametrizations"
STORED_STATE = ("step", "signed")
"""The state of a frozen `ActivationQuantizer` that computes its output; the rest only calibrates it."""


class ActivationPlacementError(ValueError):
    """A point names no module of the model, or one that already has its quantizer."""


@dataclass(frozen=True)
class ActivationPoint:
    """One quantized tensor: the output of `module` (`argument` None) or its input `argument`."""

    module: str
    argument: int | None = None

    def __str__(self) -> str:
        return self.module if self.argument is None else f"{self.module}[input {self.argument}]"


@dataclass
class _Call:
    """One forward call of a module: the tensors it read (None for other arguments) and the tensor it
    returned, by identity."""

    module: str
    inputs: tuple[int | None, ...]
    output: int | None
    innermost: bool = True
    readers: list[_Call] = field(default_factory=list)


def integer_layers(model: nn.Module, layers: Mapping[str, LayerQuantization]) -> list[str]:
    """The quantized layers that onnxruntime can run on integer kernels.

    A convolution or linear layer whose quantizer writes its codes exactly as int8 levels within
    the kernels' range (`Quantizer.runs_on_integer_kernels`); a transposed convolution, a codebook
    or a grid beyond the range keeps its float kernel.
    """
    return [
        name
        for name, layer in layers.items()
        if isinstance(model.get_submodule(name), INTEGER_LAYER_TYPES)
        and get_quantizer(layer.quantizer).runs_on_integer_kernels(layer.bits)
    ]


def activation_points(model: nn.Module, example_inputs: Sequence[torch.Tensor], layers: Collection[str]) -> list[ActivationPoint]:
    """The tensors to quantize so that `layers` (and the residual sums) run on integer kernels.

    Args:
        model: The model, without activation quantizers.
        example_inputs: One input of the model (its values do not matter, only which module reads what).
        layers: The integer layers (`integer_layers`); those the forward pass never calls are ignored.
    """
    calls = _record(model, example_inputs)
    producer = {call.output: call for call in calls if call.output is not None and call.output not in call.inputs}
    for call in calls:
        for tensor in call.inputs:
            if tensor in producer:
                producer[tensor].readers.append(call)
    modules = dict(model.named_modules())
    points: set[ActivationPoint] = set()
    for call in calls:
        module = modules[call.module]
        integer_layer = call.module in layers and isinstance(module, INTEGER_LAYER_TYPES)
        if not (integer_layer or isinstance(module, Add)):
            continue
        read = call.inputs[:1] if integer_layer else call.inputs
        for argument, tensor in enumerate(read):
            if tensor is None:
                continue
            points.add(ActivationPoint(producer[tensor].module) if tensor in producer else ActivationPoint(call.module, argument))
        points.add(ActivationPoint(_output_end(call, modules, fold_norm=integer_layer).module))
    return sorted(points, key=lambda point: (point.module, -1 if point.argument is None else point.argument))


def attach_activation_quantizers(
    model: nn.Module, points: Sequence[ActivationPoint], bits: int = INTEGER_ACTIVATION_BITS
) -> dict[ActivationPoint, ActivationQuantizer]:
    """Put a new `ActivationQuantizer` (calibrating until frozen) on each point; returns them.

    Raises:
        ActivationPlacementError: A point whose module is unknown or already quantized there.
    """
    quantizers = {}
    for point in points:
        try:
            module = model.get_submodule(point.module)
        except AttributeError:
            raise ActivationPlacementError(f"activation point {point}: no module {point.module!r} in the model") from None
        quantizer = ActivationQuantizer(bits)
        if point.argument is None:
            if hasattr(module, _OUTPUT_QUANTIZER):
                raise ActivationPlacementError(f"activation point {point}: its output is already quantized")
            module.add_module(_OUTPUT_QUANTIZER, quantizer)
            module.register_forward_hook(_quantize_output)
        else:
            if not hasattr(module, _INPUT_QUANTIZERS):
                module.add_module(_INPUT_QUANTIZERS, nn.ModuleDict())
                module.register_forward_pre_hook(_quantize_inputs)
            inputs = getattr(module, _INPUT_QUANTIZERS)
            if str(point.argument) in inputs:
                raise ActivationPlacementError(f"activation point {point}: that input is already quantized")
            inputs[str(point.argument)] = quantizer
        quantizers[point] = quantizer
    return quantizers


def quantization_points(
    model: nn.Module, example_inputs: Sequence[torch.Tensor], layers: Mapping[str, LayerQuantization], bits: int
) -> list[ActivationPoint]:
    """Where a model with `bits`-bit activations quantizes them.

    At `INTEGER_ACTIVATION_BITS`, the points its integer layers need (`activation_points`), so the
    in-run model computes what the fused graph will. No kernel here takes narrower activations:
    those grids are simulated, as TinyWASE does, at the input of every quantized layer the forward
    pass calls.
    """
    if bits == INTEGER_ACTIVATION_BITS:
        return activation_points(model, example_inputs, integer_layers(model, layers))
    called = dict.fromkeys(call.module for call in _record(model, example_inputs) if call.module in layers)
    return [ActivationPoint(name, 0) for name in called]


def quantize_activations(
    model: nn.Module,
    layers: Mapping[str, LayerQuantization],
    example_inputs: Sequence[torch.Tensor],
    batches: Iterable[Sequence[torch.Tensor]],
    bits: int = INTEGER_ACTIVATION_BITS,
) -> dict[ActivationPoint, ActivationQuantizer]:
    """Quantize `model`'s activations at `bits` where `quantization_points` says: attach the
    quantizers, let them observe `batches` (eval mode, no gradients), freeze them.

    The ranges are those of `model` as it is now, so call it once its weights are quantized (or
    behind their fake-quantizers): the grid then covers what the quantized model computes.

    Args:
        layers: The model's quantized layers (a `CompressionPlan.layers`).
        example_inputs: One input of the model, to find the points.
        batches: Calibration inputs, each one tuple of the model's arguments.
        bits: Bits of the activations.

    Raises:
        QuantizationError: No calibration batch.
    """
    batches = list(batches)
    if not batches:
        raise QuantizationError("activation quantizers: no calibration batch to set their ranges on")
    points = quantization_points(model, example_inputs, layers, bits)
    quantizers = attach_activation_quantizers(model, points, bits)
    training = model.training
    try:
        with torch.no_grad():
            model.eval()
            for batch in batches:
                model(*batch)
    finally:
        model.train(training)
    for quantizer in quantizers.values():
        quantizer.freeze()
    return quantizers


def activation_quantizers(model: nn.Module) -> dict[ActivationPoint, ActivationQuantizer]:
    """The quantizers attached to `model`, by point, in module order."""
    return {
        point: module
        for name, module in model.named_modules()
        if (point := _point_of(name)) is not None and isinstance(module, ActivationQuantizer)
    }


def stored_activation_points(keys: Iterable[str]) -> list[ActivationPoint]:
    """The points whose quantizer state `keys` (a packed file's entry names) hold, in their order."""
    points = dict.fromkeys(
        point for key in keys if key.rpartition(".")[2] in STORED_STATE and (point := _point_of(key.rpartition(".")[0]))
    )
    return list(points)


def attach_stored_activation_quantizers(
    model: nn.Module, points: Sequence[ActivationPoint], bits: int
) -> dict[ActivationPoint, ActivationQuantizer]:
    """Put frozen quantizers on `points`, to take their `STORED_STATE` from a packed file next.

    Raises:
        ActivationPlacementError: A point whose module is unknown or already quantized there.
    """
    quantizers = attach_activation_quantizers(model, points, bits)
    for quantizer in quantizers.values():
        quantizer.frozen.fill_(True)  # stored quantizers were frozen: their step is final, no range is observed
    return quantizers


def calibration_state_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the attached quantizers' calibration bookkeeping (not `STORED_STATE`)."""
    return {key for key, stored in _quantizer_state(model) if not stored}


def stored_state_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the attached quantizers' `STORED_STATE`."""
    return {key for key, stored in _quantizer_state(model) if stored}


def _quantizer_state(model: nn.Module) -> Iterator[tuple[str, bool]]:
    """(state-dict key, whether it is `STORED_STATE`) of every attached quantizer's state."""
    for name, module in model.named_modules():
        if isinstance(module, ActivationQuantizer):
            for key in module.state_dict():
                yield f"{name}.{key}", key in STORED_STATE


@contextmanager
def activation_quantizers_detached(model: nn.Module) -> Iterator[None]:
    """`model` without its activation quantizers for the duration, activations in float.

    For code that walks the model's leaf modules (`spaces.describe.describe_model`): a quantizer is
    no layer of the model, and it makes the module it hooks look like a container.
    """
    detached = []
    for module in list(model.modules()):
        children = dict(module.named_children())
        for child in (_OUTPUT_QUANTIZER, _INPUT_QUANTIZERS):
            if child in children:
                detached.append((module, child, children[child]))
                delattr(module, child)
    try:
        yield
    finally:
        for module, child, quantizer in detached:
            module.add_module(child, quantizer)


def _point_of(path: str) -> ActivationPoint | None:
    """The point a quantizer's module path names (`<module>.activation_output`,
    `<module>.activation_inputs.<argument>`), or None."""
    module, _, last = path.rpartition(".")
    if last == _OUTPUT_QUANTIZER:
        return ActivationPoint(module)
    owner, _, container = module.rpartition(".")
    if container == _INPUT_QUANTIZERS and last.isdigit():
        return ActivationPoint(owner, int(last))
    return None


def _quantize_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    quantizer = getattr(module, _OUTPUT_QUANTIZER, None)  # None while detached
    return None if quantizer is None else quantizer(output)


def _quantize_inputs(module: nn.Module, args: tuple) -> tuple | None:
    quantizers = getattr(module, _INPUT_QUANTIZERS, None)  # None while detached
    if quantizers is None:
        return None
    return tuple(quantizers[str(index)](value) if str(index) in quantizers else value for index, value in enumerate(args))


def _output_end(call: _Call, modules: Mapping[str, nn.Module], fold_norm: bool) -> _Call:
    """The call whose output is quantized for `call`'s output: after a folded norm, then an absorbed activation."""
    steps = (_FOLDED_NORMS, _ABSORBED_ACTIVATIONS) if fold_norm else (_ABSORBED_ACTIVATIONS,)
    for kinds in steps:
        readers = call.readers
        if len(readers) == 1 and isinstance(modules[readers[0].module], kinds):
            call = readers[0]
    return call


def _record(model: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[_Call]:
    """The innermost module calls of one forward pass (in eval mode), in the order they ended.

    The model must have no activation quantizers yet: a quantizer's call inside the module it
    hooks would make that module's call an outer one. Modules inside a weight's parametrization (a QAT fake-quantizer) are not recorded: they
    compute weights, not activations.
    """
    calls: list[_Call] = []
    open_calls: list[_Call] = []
    kept: list[torch.Tensor] = []  # tensors stay alive, so their ids stay unique during the pass

    def started(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if open_calls:
                open_calls[-1].innermost = False
            kept.extend(value for value in args if isinstance(value, torch.Tensor))
            inputs = tuple(id(value) if isinstance(value, torch.Tensor) else None for value in args)
            open_calls.append(_Call(name, inputs, None))

        return hook

    def ended(module: nn.Module, args: tuple, output: object) -> None:
        call = open_calls.pop()
        if isinstance(output, torch.Tensor):
            kept.append(output)
            call.output = id(output)
        if call.innermost:
            calls.append(call)

    handles = []
    for name, module in model.named_modules():
        if _PARAMETRIZATIONS not in name.split("."):
            handles += [module.register_forward_pre_hook(started(name)), module.register_forward_hook(ended)]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(*example_inputs)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return calls


__all__ = [
    "INTEGER_LAYER_TYPES",
    "STORED_STATE",
    "ActivationPlacementError",
    "ActivationPoint",
    "activation_points",
    "activation_quantizers",
    "activation_quantizers_detached",
    "attach_activation_quantizers",
    "attach_stored_activation_quantizers",
    "calibration_state_keys",
    "integer_layers",
    "quantization_points",
    "quantize_activations",
    "stored_activation_points",
    "stored_state_keys",
]
