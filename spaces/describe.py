"""Turn a torch model into a `ModelDescription` by tracing one second of input.

Forward hooks on the leaf modules record each layer's activation sizes; MACs follow from the
shapes. Every leaf must map to a known layer kind, so nothing is silently left out of the cost.
A `QuantizableLSTM` is described per gate matrix (`lstm.l0.ih`, `lstm.l0.hh`, ...), each a layer
with its own bits: the input matrices as one product over all frames ("lstm_input"), the
recurrent ones as one step per frame ("lstm_recurrent").
A quantized layer's kernel class is its quantizer's (`Quantizer.kernel_class`), and so is how
its codes are decoded (`Quantizer.decoding`), so the cost model, which never imports the
quantizers, reads both from the description. A parameter-free layer records its operation (ReLU
or PReLU, average or statistics pooling), which runtimes run as different kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces.description import FLOAT_BITS, LayerDescription, ModelDescription
from spaces.models.layers import Add, ChannelsFirst, GlobalContext, Multiply, StatisticsPooling, WeightedStatisticsPooling
from spaces.models.recurrent import QuantizableLSTM
from spaces.quant import CodebookLookup, Decoding, DequantizeLinear, ScaledTable, get_quantizer

_PASS_THROUGH = (nn.Identity, nn.Sequential, nn.Dropout)

_OPERATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Softmax: "softmax",
    nn.AdaptiveAvgPool1d: "average",
    StatisticsPooling: "statistics",
    WeightedStatisticsPooling: "weighted_statistics",
    GlobalContext: "global_context",
    Add: "add",
    Multiply: "multiply",
}
"""Module type -> the `spaces.description.OPERATIONS` entry it records (subclasses inherit it)."""

_WEIGHT_DECODINGS: dict[type[Decoding], str] = {DequantizeLinear: "linear", ScaledTable: "table", CodebookLookup: "table"}
"""A quantizer's decoding -> the `spaces.description.WEIGHT_DECODINGS` entry its layers record."""


def _layer_quantizer(quantizer: str | Mapping[str, str], name: str) -> str:
    return quantizer if isinstance(quantizer, str) else quantizer[name]


def describe_model(
    model: nn.Module,
    family: str,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    sample_rate: int,
    weight_bits: Mapping[str, int] | None = None,
    quantizer: str | Mapping[str, str] = "uniform",
    overhead_bits: Mapping[str, int] | None = None,
    shared_with: Mapping[str, str] | None = None,
    side_bits: int = FLOAT_BITS,
) -> ModelDescription:
    """Describe `model` for `example_input`, which must hold exactly one second of audio (batch 1).

    A model taking several inputs (an extractor's mixture and enrollment) gets them as a tuple. A
    module run more than once (an encoder shared by two inputs) stores its weights once: its
    later runs are described as sharing them with the first.

    Args:
        weight_bits: Bits per layer name; layers not named stay FP32.
        quantizer: Registered quantizer family of the layers below 32 bits, for all or per layer
            name; each such layer records the family's kernel class at its bits.
        overhead_bits: Side-data bits (scales, codebooks) per quantized layer name.
        shared_with: Layer name -> the layer whose weights it reuses (stored once, run each time).
        side_bits: Bits per extra parameter (bias, norm term) of the quantized layers and of the
            layers without weights; the layers kept at FP32 keep 32-bit extras.

    Raises:
        QuantizationError: A quantized layer's family is not registered.
    """
    weight_bits = weight_bits or {}
    overhead_bits = overhead_bits or {}
    shared_with = shared_with or {}
    layers: list[LayerDescription] = []
    traced: set[str] = set()
    writers = _Writers()

    def add(work: _LayerWork, input_layers: tuple[int, ...]) -> None:
        name = work.name
        bits = weight_bits.get(name, FLOAT_BITS) if work.params else FLOAT_BITS
        family = _layer_quantizer(quantizer, name) if bits < FLOAT_BITS else "none"
        layers.append(
            LayerDescription(
                name=name,
                kind=work.kind,
                params=work.params,
                extra_params=work.extra_params,
                macs_per_second=float(work.macs),
                input_elements_per_second=float(work.input_elements),
                output_elements_per_second=float(work.output_elements),
                weight_bits=bits,
                quantizer=family,
                overhead_bits=overhead_bits.get(name, 0) if bits < FLOAT_BITS else 0,
                extra_bits=side_bits if bits < FLOAT_BITS or not work.params else FLOAT_BITS,
                shared_with=shared_with.get(name, "") or (name if name in traced else ""),
                sequential_steps_per_second=float(work.sequential_steps),
                kernel_class=get_quantizer(family).kernel_class(bits) if bits < FLOAT_BITS else "fp32",
                operation=work.operation,
                weight_decoding=_WEIGHT_DECODINGS.get(type(get_quantizer(family).decoding), "") if bits < FLOAT_BITS else "",
                integer_weights=bits < FLOAT_BITS and get_quantizer(family).runs_on_integer_kernels(bits),
                input_layers=input_layers,
                input_channels=work.input_channels,
            )
        )
        traced.add(name)

    def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        input_layers = writers.read(inputs)
        for work in _layer_work(name, module, inputs, output):
            add(work, input_layers)
            input_layers = (len(layers) - 1,)  # a module described as several layers (an LSTM's gate matrices) chains them
        writers.wrote(output[0] if isinstance(output, tuple) else output, len(layers) - 1)

    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: record(name, m, i, o))
        for name, module in model.named_modules()
        if (not list(module.children()) and not isinstance(module, _PASS_THROUGH)) or isinstance(module, QuantizableLSTM)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*(example_input if isinstance(example_input, tuple) else (example_input,)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return ModelDescription(family=family, layers=tuple(layers), sample_rate=sample_rate)


class _Writers:
    """Which described layer wrote each tensor of a traced run, by the address of its data.

    Views (reshape, unsqueeze, transpose) keep the address, so a layer reading a view of another
    layer's output reads that layer; a tensor computed outside any described layer (padding,
    concatenation) has no writer. Every output is kept referenced until the trace ends, so no
    address is reused by a later tensor.
    """

    def __init__(self) -> None:
        self._writer: dict[int, int] = {}
        self._kept: list[torch.Tensor] = []

    def read(self, inputs: tuple) -> tuple[int, ...]:
        """Positions of the layers that wrote `inputs`, in order, each once."""
        found = (self._writer.get(x.data_ptr()) for x in inputs if isinstance(x, torch.Tensor) and x.numel())
        return tuple(dict.fromkeys(position for position in found if position is not None))

    def wrote(self, output: Any, position: int) -> None:
        if isinstance(output, torch.Tensor) and output.numel():
            self._writer[output.data_ptr()] = position
            self._kept.append(output)


@dataclass(frozen=True)
class _LayerWork:
    """One described layer's figures for the traced input."""

    name: str
    kind: str
    params: int
    extra_params: int
    macs: int
    input_elements: int
    output_elements: int
    sequential_steps: int
    operation: str = ""
    input_channels: int = 0


def _layer_work(name: str, module: nn.Module, inputs: tuple, output: Any) -> list[_LayerWork]:
    """The described layers of one traced module: itself, or each gate matrix of a `QuantizableLSTM`."""
    if isinstance(module, QuantizableLSTM):
        return [
            _LayerWork(
                f"{name}.{work.name}", work.kind, matrix.weight.numel(), matrix.bias.numel(), work.macs,
                work.input_elements, work.output_elements, work.sequential_steps,
            )
            for work in module.matrix_work(inputs[0])
            for matrix in (module.get_submodule(work.name),)
        ]
    if isinstance(module, nn.LSTM):
        output = output[0]  # (output, (h_n, c_n)): the per-frame output is what the next layer reads
    input_elements = sum(x.numel() for x in inputs if isinstance(x, torch.Tensor))
    kind, params, macs = _layer_cost(name, module, inputs[0], output)
    extra = sum(p.numel() for p in module.parameters(recurse=False)) - params
    extra += sum(b.numel() for key, b in module.named_buffers(recurse=False) if key != "num_batches_tracked")
    return [
        _LayerWork(
            name, kind, params, extra, macs, input_elements, output.numel(), _sequential_steps(module, inputs[0]),
            _operation(module), _input_channels(module),
        )
    ]


def _input_channels(module: nn.Module) -> int:
    """Input channels per group of a convolution; 0 for any other module."""
    convolutions = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d)
    return module.in_channels // module.groups if isinstance(module, convolutions) else 0


def _operation(module: nn.Module) -> str:
    """The operation a parameter-free module records: its type's, or its nearest base type's."""
    return next((_OPERATIONS[base] for base in type(module).__mro__ if base in _OPERATIONS), "")


def _layer_cost(name: str, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> tuple[str, int, int]:
    """(kind, weight elements, MACs) of one leaf module for the traced input."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        weight = module.weight
        macs = output.numel() * weight[0].numel()
        depthwise = module.groups > 1 and module.groups == module.in_channels
        kind = "depthwise_conv" if depthwise else ("conv2d" if isinstance(module, nn.Conv2d) else "conv1d")
        return kind, weight.numel(), macs
    if isinstance(module, nn.ConvTranspose1d):
        macs = x.numel() * module.weight[0].numel()
        return "conv_transpose1d", module.weight.numel(), macs
    if isinstance(module, nn.Linear):
        return "linear", module.weight.numel(), output.numel() * module.in_features
    if isinstance(module, nn.LSTM):
        # Every step multiplies each gate matrix (weight_ih: 4*hidden x layer input, weight_hh:
        # 4*hidden x hidden, and weight_hr when projected) by one vector, per layer and direction:
        # sum over layers and directions of 4 * hidden * (layer input + hidden) MACs per frame.
        params = sum(weight.numel() for key, weight in module.named_parameters() if key.startswith("weight_"))
        return "lstm", params, params * _lstm_frames(name, module, x)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm", 0, 0
    if isinstance(module, (nn.GroupNorm,)):
        return "groupnorm", 0, 0
    if isinstance(module, nn.LayerNorm):
        return "layernorm", 0, 0
    if isinstance(module, (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softmax)):
        return "activation", 0, 0
    if isinstance(module, (StatisticsPooling, WeightedStatisticsPooling, GlobalContext, nn.AdaptiveAvgPool1d)):
        return "pooling", 0, 0
    if isinstance(module, (Add, Multiply)):
        return "elementwise", 0, 0
    if isinstance(module, ChannelsFirst):
        return "layout", 0, 0
    raise TypeError(f"layer {name!r}: no cost description for module type {type(module).__name__}")


def _sequential_steps(module: nn.Module, x: torch.Tensor) -> int:
    """Dependent time steps of one leaf for the traced input (0 when its frames are independent).

    An LSTM runs frames * num_layers steps: each frame of a layer needs that layer's previous
    frame, and each layer needs the one below it. The two directions of a bidirectional LSTM do
    not depend on each other, so they run side by side and add no steps.
    """
    if isinstance(module, nn.LSTM):
        return _lstm_frames("", module, x) * module.num_layers
    return 0


def _lstm_frames(name: str, module: nn.LSTM, x: torch.Tensor) -> int:
    """Time steps of the traced LSTM input: (batch, time, features) when batch_first, else
    (time, batch, features); an unbatched (time, features) input is accepted too."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"layer {name!r}: LSTM input must be a padded tensor, got {type(x).__name__}")
    if x.dim() == 2:
        return x.shape[0]
    return x.shape[1] if module.batch_first else x.shape[0]
