"""What calibration times: layer stacks of one kind each, over a grid of shapes.

A case is a model to lower and time: a model family's own model (`hwcost.calibration.validation`
uses those) or a micro-benchmark, a stack of one layer kind built from the layers the families
use (`TdnnBlock`, `BasicBlock`, the extractor's `TemporalBlock`, ...). Each micro-benchmark comes
at two depths, so the fit sees a kind's per-call cost apart from the fixed cost of a run, and
over the shapes the families produce: channels from a few dozen to a few hundred, 100 frames per
second of filterbanks, 250 to 1000 encoder frames of raw audio. No case is a whole model, so no
validation model is ever part of a calibration fit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from spaces.compress import ModelSpec
from spaces.models.extractor import TemporalBlock
from spaces.models.layers import (
    Add,
    ChannelsFirst,
    DepthwiseConv1d,
    GlobalContext,
    Multiply,
    OverlapAddDecoder,
    PReLU,
    StatisticsPooling,
    TdnnBlock,
    WeightedStatisticsPooling,
)
from spaces.models.recurrent import QuantizableLSTM
from spaces.models.resnet import BasicBlock

SAMPLE_RATE = 16000
"""Sample rate the micro-benchmarks are described at (they take feature maps, not audio)."""

_MICRO_FAMILY = "microbench"
_INPUT_SEED = 0

UNIFORM_CODES = ("uniform", 8)
"""Weight-only format decoded by a DequantizeLinear on every run: 8-bit uniform codes."""
NIBBLE_CODES = ("uniform", 4)
"""Weight-only format decoded by a DequantizeLinear on every run from 4-bit containers (UINT4)."""
TABLE_CODES = ("kmeans", 4)
"""Weight-only format decoded by a Gather, folded to float at load: 4-bit k-means codebooks."""


@dataclass(frozen=True)
class ModelCase:
    """A model to build, lower for a runtime, and time.

    Attributes:
        name: Unique, readable name.
        spec: Family, arguments and input format; `spec.example_inputs` gives one second of input.
        input_names: Graph input names, in the model's argument order.
        weight_only: (quantizer, bits) its quantizable layers take under a weight-only runtime.
        build: Builds the model; None builds `spec` (a registered family).
    """

    name: str
    spec: ModelSpec
    input_names: tuple[str, ...]
    weight_only: tuple[str, int] = UNIFORM_CODES
    build: Callable[[], nn.Module] | None = None

    def model(self) -> nn.Module:
        torch.manual_seed(_INPUT_SEED)
        return (self.build or self.spec.build)()


class _Stack(nn.Module):
    """Modules applied one after another to one input of `shape` (batch 1)."""

    def __init__(self, layers: Sequence[nn.Module], shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(self.shape),)


class _Residuals(_Stack):
    """`depth` residual additions of a second input to a running sum of the first.

    Two inputs, as a residual sum in a model adds two tensors that other layers wrote: under
    int8 each is quantized once where the graph enters the integer region, which is what the
    requantize before the first sum is priced on (all its input elements). With one input added
    to itself, half of that requantize never ran, and the fit took the difference from the sums.
    """

    def __init__(self, depth: int, shape: tuple[int, ...]) -> None:
        super().__init__([Add() for _ in range(depth)], shape)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        total = x
        for add in self.layers:
            total = add(total, residual)
        return total

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return torch.zeros(self.shape), torch.zeros(self.shape)


class _Gates(_Stack):
    """`depth` gatings of the input by a per-channel gate `[1, C, 1]` (squeeze-excitation style)."""

    def __init__(self, depth: int, shape: tuple[int, ...]) -> None:
        super().__init__([Multiply() for _ in range(depth)], shape)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        for multiply in self.layers:
            x = multiply(x, gate)
        return x

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return torch.zeros(self.shape), torch.zeros(*self.shape[:-1], 1)


class _WeightedPooling(_Stack):
    """Attention-weighted statistics of the input under per-frame weights (a second input)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__([WeightedStatisticsPooling()], shape)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x, weights)

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, ...]:
        return torch.zeros(self.shape), torch.zeros(self.shape)


class _Separator(_Stack):
    """`depth` of the extractor's separator blocks (dilations 1, 2, 4, ...) with their skip paths
    summed, and the sum added to the blocks' output at the end, as the extractor's mask reads it.

    The skip sum is read only at the end, so onnxruntime runs the skip convolutions last and holds
    every block's hidden output until then (`hwcost.liveness`): the cases that put the peak-memory
    fit's live activations at the extractor's sizes (several megabytes), beyond what a chain of
    layers holds.
    """

    def __init__(self, channels: int, hidden: int, frames: int, depth: int) -> None:
        blocks = [TemporalBlock(channels, hidden, 3, 2**index, skip_channels=channels) for index in range(depth)]
        super().__init__(blocks, (1, channels, frames))
        self.skip_adds = nn.ModuleList(Add() for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.layers[0](x)
        for block, add in zip(self.layers[1:], self.skip_adds):
            x, skip = block(x)
            skips = add(skips, skip)
        return self.skip_adds[-1](x, skips)


class _Recurrent(_Stack):
    """A `QuantizableLSTM` over `[1, frames, inputs]`, returning its per-frame outputs."""

    def __init__(self, inputs: int, hidden: int, layers: int, frames: int) -> None:
        super().__init__([QuantizableLSTM(inputs, hidden, layers, batch_first=True)], (1, frames, inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x)[0]


def micro_case(
    name: str,
    build: Callable[[], _Stack],
    input_names: tuple[str, ...] = ("x",),
    weight_only: tuple[str, int] = UNIFORM_CODES,
) -> ModelCase:
    """A micro-benchmark case: `build` makes the stack, whose `example_inputs` give its inputs."""
    spec = ModelSpec(_MICRO_FAMILY, {"case": name}, 0, 0, SAMPLE_RATE)
    return ModelCase(name, spec, input_names, weight_only, build)


def _tdnn(channels_in: int, channels: int, kernel: int, dilation: int, frames: int, depth: int) -> _Stack:
    blocks = [TdnnBlock(channels_in if index == 0 else channels, channels, kernel, dilation) for index in range(depth)]
    return _Stack(blocks, (1, channels_in, frames))


def _pointwise(channels_in: int, channels: int, frames: int, depth: int) -> _Stack:
    convs = [nn.Conv1d(channels_in if index == 0 else channels, channels, 1) for index in range(depth)]
    return _Stack(convs, (1, channels_in, frames))


def _temporal(channels: int, hidden: int, dilation: int, frames: int, depth: int) -> _Stack:
    blocks = [TemporalBlock(channels, hidden, 3, dilation * 2**index, skip_channels=channels) for index in range(depth)]
    return _Stack([_FirstOutput(block) for block in blocks], (1, channels, frames))


def _depthwise(channels: int, dilation: int, frames: int, depth: int) -> _Stack:
    return _Stack([DepthwiseConv1d(channels, 3, dilation) for _ in range(depth)], (1, channels, frames))


def _residual2d(channels_in: int, channels: int, bins: int, stride: int, frames: int, depth: int) -> _Stack:
    blocks = [BasicBlock(channels_in if index == 0 else channels, channels, stride if index == 0 else 1) for index in range(depth)]
    return _Stack(blocks, (1, channels_in, bins, frames))


def _dense(inputs: int, outputs: int, frames: int, depth: int) -> _Stack:
    layers = [module for index in range(depth) for module in (nn.Linear(inputs if index == 0 else outputs, outputs), nn.ReLU())]
    return _Stack(layers, (1, frames, inputs) if frames > 1 else (1, inputs))


def _decoder(filters: int, window: int, frames: int) -> _Stack:
    return _Stack([OverlapAddDecoder(filters, window, window // 2)], (1, filters, frames))


class _FirstOutput(nn.Module):
    """A block returning (output, skip), reduced to its output so blocks chain."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)[0]


_ELEMENTWISE_MODULES: dict[str, Callable[[int], nn.Module]] = {
    "relu": lambda channels: nn.ReLU(),
    "prelu": lambda channels: PReLU(),
    "sigmoid": lambda channels: nn.Sigmoid(),
    "tanh": lambda channels: nn.Tanh(),
    "softmax": lambda channels: nn.Softmax(dim=-1),
    "batchnorm": lambda channels: nn.BatchNorm1d(channels),
    "groupnorm": lambda channels: nn.GroupNorm(1, channels, eps=1e-8),
}
"""Chainable parameter-free (or per-channel) layers, built for a channel count."""

_POOLING_MODULES: dict[str, Callable[[], nn.Module]] = {
    "average": lambda: nn.AdaptiveAvgPool1d(1),
    "statistics": StatisticsPooling,
    "global_context": GlobalContext,
}


def _chain(op: str, channels: int, frames: int, depth: int) -> _Stack:
    return _Stack([_ELEMENTWISE_MODULES[op](channels) for _ in range(depth)], (1, channels, frames))


def _pool(op: str, channels: int, frames: int) -> _Stack:
    return _Stack([_POOLING_MODULES[op]()], (1, channels, frames))


def _cases(
    prefix: str,
    factory: Callable[..., _Stack],
    shapes: Sequence[tuple],
    depths: Sequence[int] = (),
    input_names: tuple[str, ...] = ("x",),
    weight_formats: Sequence[tuple[str, int]] = (),
) -> list[ModelCase]:
    """One case per shape and depth (`factory(*shape, depth)`; `factory(*shape)` without depths),
    named after both; also each shape at its first depth in each of `weight_formats`."""
    cases = []
    for shape in shapes:
        label = f"{prefix}-{'x'.join(map(str, shape))}"
        for index, depth in enumerate(depths or (None,)):
            arguments = (*shape, depth) if depth is not None else shape
            name = label if depth is None else f"{label}-d{depth}"
            build = functools.partial(factory, *arguments)
            cases.append(micro_case(name, build, input_names))
            if index == 0:
                cases += [
                    micro_case(f"{name}-{quantizer}{bits}", build, input_names, (quantizer, bits))
                    for quantizer, bits in weight_formats
                ]
    return cases


@dataclass(frozen=True)
class Grid:
    """The shapes of one calibration grid, per micro-benchmark family (see `calibration_cases`)."""

    tdnn: tuple[tuple[int, int, int, int, int], ...]
    pointwise: tuple[tuple[int, int, int], ...]
    temporal: tuple[tuple[int, int, int, int], ...]
    depthwise: tuple[tuple[int, int, int], ...]
    residual2d: tuple[tuple[int, int, int, int, int], ...]
    dense: tuple[tuple[int, int, int], ...]
    recurrent: tuple[tuple[int, int, int, int], ...]
    decoder: tuple[tuple[int, int, int], ...]
    elementwise: tuple[tuple[int, int], ...]
    depths: tuple[int, int] = (1, 3)
    separator: tuple[tuple[int, int, int], ...] = ()
    separator_depths: tuple[int, int] = (2, 6)
    flattened_maps: tuple[tuple[int, int], ...] = ()
    frames: tuple[tuple[int, int, int], ...] = ()
    stems: tuple[tuple[int, int, int], ...] = ()


FULL_GRID = Grid(
    # (input channels, channels, kernel, dilation, frames): TDNN layers of x-vector and ECAPA
    tdnn=(
        (40, 64, 5, 1, 100), (64, 64, 3, 2, 100), (128, 128, 3, 3, 100), (256, 256, 1, 1, 100),
        (256, 256, 3, 2, 100), (512, 512, 1, 1, 100), (512, 512, 5, 1, 100), (32, 32, 3, 4, 100),
        (96, 96, 3, 2, 100), (384, 384, 3, 2, 100), (192, 768, 1, 1, 100), (768, 192, 1, 1, 100),
        (8, 8, 3, 2, 100), (16, 16, 3, 3, 100), (24, 24, 3, 4, 100), (80, 48, 5, 1, 100),
    ),
    # (input channels, channels, frames): 1x1 convolutions without an epilogue, on frames or on one
    # pooled vector (squeeze-excitation)
    pointwise=(
        (64, 256, 500), (256, 64, 500), (128, 128, 1000), (64, 64, 250), (512, 128, 100), (32, 512, 100),
        (16, 64, 100), (64, 16, 1), (16, 64, 1), (512, 128, 1), (128, 512, 1),
    ),
    # (channels, hidden, dilation, frames): the extractor's separator blocks
    temporal=((64, 128, 1, 500), (32, 64, 2, 1000), (128, 256, 1, 250), (64, 256, 4, 500), (48, 96, 1, 500), (16, 32, 1, 500)),
    # (channels, dilation, frames): depthwise convolutions (with their PReLU in the temporal blocks)
    depthwise=((128, 1, 500), (256, 2, 500), (64, 4, 1000), (512, 1, 250), (96, 8, 500), (48, 2, 500)),
    # (input channels, channels, bins, stride, frames): ResNet basic blocks, the first two on the
    # stem's one input channel (narrow convolutions: `hwcost.kernels`, "narrow_positions"), the last
    # five the wide late stages at the positions they run on (without them the fit sees wide
    # convolutions on a few dozen positions only, and prices a wide ResNet's late stages low)
    residual2d=(
        (1, 16, 40, 1, 100), (1, 32, 40, 1, 100),
        (8, 8, 40, 1, 100), (8, 16, 40, 2, 100), (16, 32, 20, 2, 50), (32, 32, 10, 1, 25), (32, 64, 10, 2, 25),
        (16, 16, 20, 1, 50), (64, 64, 5, 1, 13), (24, 24, 40, 1, 100), (96, 128, 5, 2, 13), (192, 192, 3, 1, 7),
        (48, 96, 20, 2, 50), (96, 96, 10, 1, 25), (128, 128, 10, 1, 25), (192, 192, 5, 1, 13), (256, 256, 5, 1, 13),
    ),
    # (inputs, outputs, frames): embedding layers (one frame) and per-frame ones
    dense=(
        (3072, 192, 1), (1536, 512, 1), (512, 512, 1), (256, 128, 1), (64, 64, 100), (128, 256, 100), (32, 16, 1), (128, 64, 1),
        (1536, 1536, 1),
    ),
    # (inputs, hidden, layers, frames): GE2E-style stacked LSTMs
    recurrent=(
        (40, 64, 1, 100), (40, 128, 2, 100), (40, 256, 1, 160), (64, 192, 2, 100), (40, 96, 3, 100), (40, 32, 1, 100),
        (40, 384, 2, 100), (40, 512, 1, 100), (40, 320, 1, 100), (64, 256, 2, 160),
    ),
    # (filters, window, frames): the extractor's overlap-add decoder
    decoder=((64, 16, 1000), (256, 32, 500), (128, 32, 500), (512, 64, 250)),
    # (channels, frames): activations, norms, gates, residual sums and pooling
    elementwise=((64, 100), (256, 100), (1024, 100), (64, 500), (256, 500), (128, 1000), (16, 100), (256, 1)),
    # (channels, hidden, frames): the extractor's separator stacks, skip paths summed
    separator=((64, 128, 1000), (128, 256, 500), (96, 192, 1000), (128, 256, 1000)),
    # (rows, frames): a ResNet's last feature map as its statistics pooling reads it, channels x
    # bins rows over the few frames its strides leave; many short rows cost more per element
    # than the elementwise shapes' long ones (a broadcast subtraction walks the rows one by one)
    flattened_maps=((384, 13), (1024, 7), (2048, 25)),
    # (bins, channels, frames): filterbank frames turned channels first into a TDNN block (one of
    # the tdnn shapes above)
    frames=((40, 64, 100), (80, 48, 100)),
    # (bins, channels, frames): a ResNet stem convolution on filterbank frames, with and without
    # turning them channels first (under int8 a transpose of the 8-bit codes: `hwcost.runtimes`)
    stems=((40, 8, 100), (80, 8, 100)),
)
"""The grid `search hwcost calibrate` measures by default."""

SMALL_GRID = Grid(
    tdnn=((32, 32, 3, 1, 50),),
    pointwise=((16, 32, 50),),
    temporal=(),
    depthwise=((32, 1, 50),),
    residual2d=(),
    dense=((64, 32, 1),),
    recurrent=(),
    decoder=(),
    elementwise=((32, 50),),
)
"""A few small shapes: enough to fit every layer kind of a small model, for tests."""

GRIDS = {"full": FULL_GRID, "small": SMALL_GRID}
"""Calibration grids by name."""


def calibration_cases(grid: Grid, weight_formats: Sequence[tuple[str, int]] = (), stem_pairs: bool = False) -> list[ModelCase]:
    """Every micro-benchmark of `grid`: each layer kind at each shape and depth, the layers with
    weights also at one depth in each of `weight_formats` (under a weight-only runtime, codes it
    decodes differently from `UNIFORM_CODES`), and with `stem_pairs` the stems with and without
    the layout change before them (`Backend.stem_pairs`)."""
    depths, formats = grid.depths, weight_formats
    cases = [
        *_cases("tdnn", _tdnn, grid.tdnn, depths, weight_formats=formats),
        *_cases("pointwise", _pointwise, grid.pointwise, depths, weight_formats=formats),
        *_cases("temporal", _temporal, grid.temporal, depths, weight_formats=formats),
        *_cases("depthwise", _depthwise, grid.depthwise, depths, weight_formats=formats),
        *_cases("residual2d", _residual2d, grid.residual2d, depths, weight_formats=formats),
        *_cases("dense", _dense, grid.dense, depths, weight_formats=formats),
        *_cases("recurrent", _Recurrent, grid.recurrent, weight_formats=formats),
        *_cases("decoder", _decoder, grid.decoder, weight_formats=formats),
        *_cases("separator", _Separator, grid.separator, grid.separator_depths),
    ]
    for op in _ELEMENTWISE_MODULES:
        cases += _cases(op, functools.partial(_chain, op), grid.elementwise, depths)
    cases += _cases("residual", _residuals, grid.elementwise, depths, input_names=("x", "residual"))
    cases += _cases("gate", _gates, grid.elementwise, depths, input_names=("x", "gate"))
    for op in _POOLING_MODULES:
        cases += _cases(op, functools.partial(_pool, op), grid.elementwise)
    cases += _cases("statistics", functools.partial(_pool, "statistics"), grid.flattened_maps)
    cases += _cases("weighted", _weighted, grid.elementwise, input_names=("x", "weights"))
    cases += _cases("frames", _Frames, grid.frames)
    if stem_pairs:
        cases += _cases("layout", functools.partial(_Stem, True), grid.stems)
        cases += _cases("stem", functools.partial(_Stem, False), grid.stems)
    return cases


def _residuals(channels: int, frames: int, depth: int) -> _Stack:
    return _Residuals(depth, (1, channels, frames))


def _gates(channels: int, frames: int, depth: int) -> _Stack:
    return _Gates(depth, (1, channels, frames))


def _weighted(channels: int, frames: int) -> _Stack:
    return _WeightedPooling((1, channels, frames))


class _Frames(_Stack):
    """Filterbank frames `[1, frames, bins]` turned channels first (`ChannelsFirst`) into a TDNN
    block, as the 1-D families take them: the float runtimes' transpose, priced beside a block
    the grid also times without it (under int8 the two cancel, and the case is a TDNN block)."""

    def __init__(self, bins: int, channels: int, frames: int) -> None:
        super().__init__([ChannelsFirst(), TdnnBlock(bins, channels, 5, 1)], (1, frames, bins))


class _Stem(_Stack):
    """A ResNet stem's 3x3 convolution from the one channel of a spectrogram `[1, 1, bins, frames]`,
    given as it is or, `frame_major`, as filterbank frames `[1, frames, bins]` turned channels
    first the way the ResNets take them.

    Timed in pairs: the two differ only by the layout change, which an int8 graph runs as a
    transpose of the 8-bit codes into its channels-last convolution, a generic copy several
    times slower per element than the float transpose (`hwcost.runtimes`); neither alone nor in
    front of a whole block would its cost stand out from a fit's noise.
    """

    def __init__(self, frame_major: bool, bins: int, channels: int, frames: int) -> None:
        convolution = nn.Conv2d(1, channels, 3, padding=1)
        if frame_major:
            super().__init__([ChannelsFirst(), convolution], (1, frames, bins))
        else:
            super().__init__([convolution], (1, 1, bins, frames))
        self.frame_major = frame_major

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.frame_major:
            return self.layers(x)
        return self.layers[1](self.layers[0](x).unsqueeze(1))


__all__ = [
    "FULL_GRID",
    "GRIDS",
    "SAMPLE_RATE",
    "SMALL_GRID",
    "NIBBLE_CODES",
    "TABLE_CODES",
    "UNIFORM_CODES",
    "Grid",
    "ModelCase",
    "calibration_cases",
    "micro_case",
]
