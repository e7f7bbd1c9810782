"""Per runtime: how a model becomes the graph that runtime runs, with the description it is priced by.

A backend turns a `ModelCase` into an ONNX graph as a user of that runtime would get it, through
the project's own compression and export (`spaces.compress`, and the exporter the caller passes:
`search.onnx_export.export_onnx`, which `hwcost` may not import, being below the search
package), and into the description the cost model prices, from the same weights:

- onnxruntime-fp32: the float model, exported as it is;
- onnxruntime-weight-only: every quantizable layer quantized in the case's weight-only format and
  exported with integer codes (uniform codes decoded by a DequantizeLinear on every run, table
  codes by a Gather that onnxruntime folds at load), as `search export` writes bundles;
- onnxruntime-int8: every quantizable layer at 8-bit uniform codes, the float graph of the
  quantized model statically quantized by `onnxruntime.quantization` (QDQ format, per-channel
  int8 weights, uint8 activations from min/max calibration on `CALIBRATION_BATCHES` random
  inputs, batch norms folded first by its pre-processing), so every activation of the
  description is 8-bit.

The packed-kernel runtime has no backend: nothing on this host executes it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from hwcost.calibration.cases import NIBBLE_CODES, TABLE_CODES, ModelCase
from hwcost.calibration.measure import Graph, Timing, TimingPlan, time_graphs
from spaces.compress import CompressedModel, finalize_compressed, quantizable_layers
from spaces.description import ModelDescription
from spaces.quant import QuantizedWeight, get_quantizer

Exporter = Callable[
    [nn.Module, Mapping[str, QuantizedWeight], Mapping[str, torch.Tensor], Sequence[str], Mapping[str, Mapping[int, str]]],
    onnx.ModelProto,
]
"""`search.onnx_export.export_onnx`: (model, quantized weights, example inputs by name, output
names, dynamic axes) -> the graph with its quantized layers' codes decoded in it."""

OUTPUT_NAME = "output"
CALIBRATION_BATCHES = 4
"""Random inputs the static quantizer's min/max calibration sees (timing does not depend on the ranges)."""
_FEED_SEED = 0
_INT8_BITS = 8


@dataclass(frozen=True)
class PreparedModel:
    """A case lowered for one runtime: its graph, its description and inputs to run it on.

    Attributes:
        name: The case's name.
        description: What the cost model prices (bits as the graph stores them).
        graph: The ONNX graph the runtime loads.
        feeds: One second of input, by graph input name (random values, fixed seed).
    """

    name: str
    description: ModelDescription
    graph: onnx.ModelProto
    feeds: dict[str, np.ndarray]


class Backend(ABC):
    """Lowers cases to the graphs one runtime runs, exporting through `exporter`."""

    runtime: str
    weight_formats: tuple[tuple[str, int], ...] = ()
    """Weight-only formats beyond the default the runtime runs differently (calibration measures
    its weighted micro-benchmarks in each too)."""
    stem_pairs: bool = False
    """Whether calibration times the grid's stem pairs, a ResNet stem with and without the layout
    change before it: for a runtime whose 2-D convolutions turn that change into a costly copy
    (int8's transpose of 8-bit codes), which only the pair's difference pins. A float runtime's
    transpose is cheap and priced from the frame cases; the pairs' narrow stems would move its
    2-D convolution fit, which does not price the layout reorders between narrow float
    convolutions, for no gain."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def prepare(self, case: ModelCase) -> PreparedModel:
        """The case's graph and description for this runtime."""
        model = case.model().eval()
        quantized = self._quantized(case, model)
        compressed = finalize_compressed(case.spec, model, quantized)
        examples = dict(zip(case.input_names, case.spec.example_inputs(compressed.model)))
        rng = np.random.default_rng(_FEED_SEED)
        feeds = {name: rng.standard_normal(tuple(tensor.shape)).astype(np.float32) for name, tensor in examples.items()}
        graph = self._graph(compressed, quantized, examples, feeds)
        return PreparedModel(case.name, self._description(compressed.description), graph, feeds)

    @abstractmethod
    def _quantized(self, case: ModelCase, model: nn.Module) -> dict[str, QuantizedWeight]:
        """The quantized weights of the case's layers in this runtime's format."""

    @abstractmethod
    def _graph(
        self,
        compressed: CompressedModel,
        quantized: dict[str, QuantizedWeight],
        examples: dict[str, torch.Tensor],
        feeds: dict[str, np.ndarray],
    ) -> onnx.ModelProto:
        """The graph the runtime loads."""

    def _description(self, description: ModelDescription) -> ModelDescription:
        return description

    @abstractmethod
    def weight_format(self, case: ModelCase) -> str:
        """How the case's weights (and activations) are stored for this runtime, for reports."""

    def _export(
        self, model: nn.Module, quantized: dict[str, QuantizedWeight], examples: dict[str, torch.Tensor]
    ) -> onnx.ModelProto:
        return self._exporter(model, quantized, examples, [OUTPUT_NAME], {})


def _quantize_all(model: nn.Module, quantizer: str, bits: int) -> dict[str, QuantizedWeight]:
    family = get_quantizer(quantizer)
    return {name: family.quantize(model.get_submodule(name).weight, bits) for name in quantizable_layers(model)}


class FloatBackend(Backend):
    """The float model as exported."""

    runtime = "onnxruntime-fp32"

    def _quantized(self, case: ModelCase, model: nn.Module) -> dict[str, QuantizedWeight]:
        return {}

    def _graph(self, compressed, quantized, examples, feeds) -> onnx.ModelProto:
        return self._export(compressed.model, quantized, examples)

    def weight_format(self, case: ModelCase) -> str:
        return "fp32"


class WeightOnlyBackend(Backend):
    """Integer codes in the graph, decoded to float weights (the project's bundles)."""

    runtime = "onnxruntime-weight-only"
    weight_formats = (NIBBLE_CODES, TABLE_CODES)

    def _quantized(self, case: ModelCase, model: nn.Module) -> dict[str, QuantizedWeight]:
        return _quantize_all(model, *case.weight_only)

    def _graph(self, compressed, quantized, examples, feeds) -> onnx.ModelProto:
        return self._export(compressed.model, quantized, examples)

    def weight_format(self, case: ModelCase) -> str:
        quantizer, bits = case.weight_only
        return f"{bits}-bit {quantizer}"


class _Batches(CalibrationDataReader):
    """Random inputs shaped like the feeds, for the static quantizer's range calibration."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        rng = np.random.default_rng(_FEED_SEED + 1)
        batches = [
            {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in feeds.items()}
            for _ in range(CALIBRATION_BATCHES)
        ]
        self._batches = iter([feeds, *batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


class StaticInt8Backend(Backend):
    """8-bit weights and activations: the quantized model's float graph, statically quantized to QDQ."""

    runtime = "onnxruntime-int8"
    stem_pairs = True

    def _quantized(self, case: ModelCase, model: nn.Module) -> dict[str, QuantizedWeight]:
        return _quantize_all(model, "uniform", _INT8_BITS)

    def _graph(self, compressed, quantized, examples, feeds) -> onnx.ModelProto:
        with tempfile.TemporaryDirectory(prefix="hwcost-int8-") as folder:
            float_path, prepared_path, quantized_path = (Path(folder) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
            onnx.save(self._export(compressed.model, {}, examples), float_path)
            quant_pre_process(float_path, prepared_path, skip_symbolic_shape=True)
            quantize_static(
                prepared_path, quantized_path, _Batches(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
            return onnx.load(quantized_path)

    def weight_format(self, case: ModelCase) -> str:
        return "int8, 8-bit activations"

    def _description(self, description: ModelDescription) -> ModelDescription:
        """Every activation is quantized: static quantization puts a QuantizeLinear on each, float
        ops it knows included."""
        layers = tuple(dataclasses.replace(layer, activation_bits=_INT8_BITS) for layer in description.layers)
        return dataclasses.replace(description, layers=layers, quantized_float_io=True)


BACKENDS: dict[str, type[Backend]] = {backend.runtime: backend for backend in (FloatBackend, WeightOnlyBackend, StaticInt8Backend)}
"""Backends of the runtimes this host can run, by runtime name."""


class BackendError(ValueError):
    """A runtime this host cannot run (modelled only), or an unknown one."""


def get_backend(runtime: str, exporter: Exporter) -> Backend:
    """The backend of `runtime`, exporting through `exporter`.

    Raises:
        BackendError: naming the runtimes that can be measured here.
    """
    if runtime not in BACKENDS:
        raise BackendError(
            f"runtime {runtime!r} cannot be measured on this host (it is modelled only); measurable runtimes: "
            f"{', '.join(sorted(BACKENDS))}"
        )
    return BACKENDS[runtime](exporter)


def lower_all(
    backend: Backend, cases: Sequence[ModelCase], progress: Callable[[str, int, int], None] | None = None
) -> list[PreparedModel]:
    """Every case lowered for `backend`'s runtime."""
    prepared = []
    for index, case in enumerate(cases):
        if progress:
            progress(f"exporting ({case.name})", index, len(cases))
        prepared.append(backend.prepare(case))
    return prepared


def timed_graphs(prepared: Sequence[PreparedModel]) -> list[Graph]:
    """The (graph, feeds) pairs `measure.time_graphs` times."""
    return [(model.graph, model.feeds) for model in prepared]


def lower_and_time(
    backend: Backend,
    cases: Sequence[ModelCase],
    timing: TimingPlan,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[PreparedModel], list[Timing]]:
    """Lower every case for `backend`'s runtime, then time all graphs together (calibration and
    validation measure the same way, so their figures compare)."""
    prepared = lower_all(backend, cases, progress)
    timing_progress = (lambda done, total: progress("timing", done, total)) if progress else None
    timings = time_graphs(timed_graphs(prepared), timing, timing_progress)
    return prepared, timings


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "Exporter",
    "PreparedModel",
    "get_backend",
    "lower_all",
    "lower_and_time",
    "timed_graphs",
]
