"""`search hwcost validate`: the cost model against onnxruntime on a fixed set of whole models.

The validation set is every family the cost model prices for search (ResNet, ECAPA-TDNN,
x-vector, the extractor, GE2E) at several widths and depths, fixed here so that accuracy figures
compare across calibrations. Calibration never times a whole model (`hwcost.calibration.cases`),
so none of these is part of a fit. Each model is lowered in the target runtime's format
(`hwcost.calibration.backends`: float; weight-only in a rotation of uniform and table-decoded
codes; static int8 with 8-bit activations), timed on one thread (median CPU time), its peak
memory measured in a fresh process, and both set beside the target's prediction.

Worst layer kinds: one profiled session per model gives each graph node's share of the run
(net of the profiler's own per-node cost, `hwcost.calibration.profiling`); a
node is attributed to the description layer whose name its module path starts with (onnxruntime
keeps the exporter's `/module/path/Op` names, a fused node one of its ops'), or to the layers
inside its module when it runs several (an LSTM node runs its layers' gate matrices; their share
is split as predicted), a fused layer to the layer it is fused into, so each op's measured time
(its share of the median CPU time) can be set beside its predicted time, summed over the set.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import spearmanr

from hwcost.calibration.backends import Backend, PreparedModel, lower_and_time
from hwcost.calibration.cases import NIBBLE_CODES, TABLE_CODES, UNIFORM_CODES, ModelCase
from hwcost.calibration.measure import (
    VALIDATION_TIMING,
    Timing,
    TimingPlan,
    host_provenance,
    measure_peak_memory,
    reference_ms,
)
from hwcost.calibration.profiling import node_times_us
from hwcost.estimator import CostEstimate, CostModel
from hwcost.kernels import INFERENCE_OP, layer_op
from hwcost.profile import TargetProfile
from hwcost.runtimes import get_runtime
from spaces.compress import ModelSpec

FRAMES_PER_SECOND = 100
"""Filterbank frames per second of audio (10 ms hop), as every verification config uses."""

UNATTRIBUTED = "unattributed"
"""Op of measured time whose graph node names no description layer (input transposes, Res2Net splits)."""

WITHIN = (0.10, 0.25)
"""Relative error bounds the summary counts models within."""

_WEIGHT_ONLY_ROTATION = (UNIFORM_CODES, NIBBLE_CODES, TABLE_CODES, ("pow2", 4))
"""Weight-only formats given to the validation models in turn: decoded per run and folded at load."""

_WORST_KINDS = 5
_WORST_KINDS_SHARE = 0.01
"""Ops below this share of the measured time are left out of the worst kinds (their ratio is noise)."""
_RUN_SUFFIX = re.compile(r"_\d+$")
"""The exporter's suffix on the scope of a module's second and later runs."""


Entry = tuple[str, ModelSpec, tuple[str, ...]]
"""A validation model: name, spec, graph input names."""


def _filterbank(name: str, family: str, bins: int, **kwargs: Any) -> Entry:
    return name, ModelSpec(family, {"num_mel_bins": bins, **kwargs}, bins, FRAMES_PER_SECOND, 16000), ("features",)


def _resnet(name: str, width: int, blocks: tuple[int, ...], embedding: int, bins: int = 40) -> Entry:
    return _filterbank(name, "resnet", bins, base_width=width, blocks=blocks, embedding_dim=embedding)


def _ecapa(name: str, channels: int, scale: int, bottleneck: int, mfa: int, embedding: int, bins: int = 40, blocks: int = 3) -> Entry:
    sizes = dict(se_channels=bottleneck, attention_channels=bottleneck, mfa_channels=mfa, embedding_dim=embedding, blocks=blocks)
    return _filterbank(name, "ecapa_tdnn", bins, channels=channels, scale=scale, **sizes)


def _xvector(name: str, channels: int, pooling: int, embedding: int, bins: int = 40, layers: int = 5) -> Entry:
    sizes = dict(channels=channels, pooling_channels=pooling, embedding_dim=embedding, frame_layers=layers)
    return _filterbank(name, "xvector", bins, **sizes)


def _extractor(
    name: str, rate: int, filters: int, window: int, channels: tuple[int, int, int], blocks: int, stacks: int, embedding: int
) -> Entry:
    """`channels`: bottleneck, hidden and skip channels."""
    bottleneck, hidden, skip = channels
    sizes = dict(bottleneck=bottleneck, hidden=hidden, skip_channels=skip, blocks=blocks, stacks=stacks, embedding_dim=embedding)
    return name, ModelSpec("extractor", dict(filters=filters, window=window, **sizes), 0, 0, rate), ("mixture", "enrollment")


def _ge2e(name: str, hidden: int, embedding: int, layers: int) -> Entry:
    return _filterbank(name, "ge2e", 40, hidden_size=hidden, embedding_dim=embedding, num_layers=layers)


_MODELS = (
    _resnet("resnet-w8-b1111", 8, (1, 1, 1, 1), 128),
    _resnet("resnet-w8-b1111-80bins", 8, (1, 1, 1, 1), 128, bins=80),
    _resnet("resnet-w16-b1111", 16, (1, 1, 1, 1), 128),
    _resnet("resnet-w8-b2222", 8, (2, 2, 2, 2), 128),
    _resnet("resnet-w12-b2332", 12, (2, 3, 3, 2), 192),
    _resnet("resnet-w16-b2222-80bins", 16, (2, 2, 2, 2), 256, bins=80),
    _resnet("resnet-w32-b1111", 32, (1, 1, 1, 1), 128),
    _resnet("resnet-w24-b3463", 24, (3, 4, 6, 3), 256),
    _ecapa("ecapa-c32", 32, 4, 8, 96, 64),
    _ecapa("ecapa-c48", 48, 4, 12, 144, 64),
    _ecapa("ecapa-c64", 64, 4, 16, 192, 128),
    _ecapa("ecapa-c96", 96, 4, 24, 288, 96),
    _ecapa("ecapa-c128-2blocks", 128, 4, 32, 256, 128, blocks=2),
    _ecapa("ecapa-c256-80bins", 256, 8, 64, 768, 192, bins=80),
    _ecapa("ecapa-c512-80bins", 512, 8, 128, 1536, 192, bins=80),
    _xvector("xvector-c32", 32, 96, 32),
    _xvector("xvector-c64", 64, 192, 64),
    _xvector("xvector-c128", 128, 384, 128),
    _xvector("xvector-c192-4layers", 192, 512, 128, layers=4),
    _xvector("xvector-c256", 256, 768, 256),
    _xvector("xvector-c512-80bins", 512, 1500, 512, bins=80),
    _extractor("extractor-f32-x2r2", 8000, 32, 16, (32, 48, 32), 2, 2, 32),
    _extractor("extractor-f64-x3r2", 8000, 64, 16, (64, 128, 64), 3, 2, 64),
    _extractor("extractor-f64-x5r3", 8000, 64, 32, (32, 64, 32), 5, 3, 32),
    _extractor("extractor-f256-x4r3", 8000, 256, 32, (64, 128, 64), 4, 3, 64),
    _extractor("extractor-f128-x4r2-16k", 16000, 128, 32, (96, 192, 96), 4, 2, 64),
    _extractor("extractor-f256-x3r3-16k", 16000, 256, 64, (128, 256, 128), 3, 3, 64),
    _ge2e("ge2e-h64-l2", 64, 64, 2),
    _ge2e("ge2e-h96-l3", 96, 96, 3),
    _ge2e("ge2e-h128-l3", 128, 128, 3),
    _ge2e("ge2e-h192-l1", 192, 128, 1),
    _ge2e("ge2e-h256-l3", 256, 256, 3),
    _ge2e("ge2e-h384-l2", 384, 256, 2),
)

VALIDATION_SET: tuple[ModelCase, ...] = tuple(
    ModelCase(name, spec, inputs, _WEIGHT_ONLY_ROTATION[index % len(_WEIGHT_ONLY_ROTATION)])
    for index, (name, spec, inputs) in enumerate(_MODELS)
)
"""The fixed validation set: every family at several widths and depths."""

TINY_SET: tuple[ModelCase, ...] = tuple(case for case in VALIDATION_SET if case.name in ("xvector-c32", "ge2e-h64-l2"))
"""Two small models of the set, for a quick check of the command (and tests)."""

VALIDATION_SETS = {"full": VALIDATION_SET, "tiny": TINY_SET}


@dataclass(frozen=True)
class ModelValidation:
    """One model: predicted and measured latency and peak memory.

    Attributes:
        name, family: The case and its model family.
        weights: How its weights are stored for the runtime ("fp32", "8-bit uniform", "int8, 8-bit activations", ...).
        predicted_ms, measured_ms: Latency for one second of audio.
        noise: The larger of the runs' relative interquartile range and the spread of the round medians.
        predicted_peak_bytes, measured_peak_bytes: Peak memory.
        predicted_ms_by_op, measured_ms_by_op: Latency split by op (layer kind[.operation]).
    """

    name: str
    family: str
    weights: str
    predicted_ms: float
    measured_ms: float
    noise: float
    predicted_peak_bytes: int
    measured_peak_bytes: int
    predicted_ms_by_op: Mapping[str, float]
    measured_ms_by_op: Mapping[str, float]

    @property
    def error(self) -> float:
        """Predicted over measured latency, minus one."""
        return self.predicted_ms / self.measured_ms - 1

    @property
    def memory_error(self) -> float:
        return self.predicted_peak_bytes / self.measured_peak_bytes - 1


@dataclass(frozen=True)
class KindError:
    """One op over the whole set: measured and predicted time, and their ratio."""

    op: str
    measured_ms: float
    predicted_ms: float

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.predicted_ms if self.predicted_ms > 0 else math.inf


@dataclass(frozen=True)
class ValidationReport:
    """Accuracy of a target on a validation set.

    Attributes:
        target, runtime: What was validated.
        models: Per model, in set order.
        provenance: Where and how it was measured.
    """

    target: str
    runtime: str
    models: tuple[ModelValidation, ...]
    provenance: Mapping[str, Any]

    def within(self, bound: float, memory: bool = False) -> float:
        """Fraction of models whose latency (or peak memory) error is within +-bound."""
        errors = [model.memory_error if memory else model.error for model in self.models]
        return sum(abs(error) <= bound for error in errors) / len(errors)

    def spearman(self, memory: bool = False) -> float:
        """Rank correlation of predicted and measured latency (or peak memory) over the models."""
        if len(self.models) < 2:
            return math.nan
        pairs = [
            (model.predicted_peak_bytes, model.measured_peak_bytes) if memory else (model.predicted_ms, model.measured_ms)
            for model in self.models
        ]
        return float(spearmanr([pair[0] for pair in pairs], [pair[1] for pair in pairs]).statistic)

    def worst_kinds(self, count: int = _WORST_KINDS) -> list[KindError]:
        """The ops whose measured time is furthest (by ratio) from the predicted, over the set,
        among those with at least `_WORST_KINDS_SHARE` of the measured time."""
        measured: dict[str, float] = defaultdict(float)
        predicted: dict[str, float] = defaultdict(float)
        for model in self.models:
            for op, value in model.measured_ms_by_op.items():
                measured[op] += value
            for op, value in model.predicted_ms_by_op.items():
                predicted[op] += value
        total = sum(measured.values())
        ops = (set(measured) | set(predicted)) - {UNATTRIBUTED}  # time no layer names has no prediction to compare
        kinds = [KindError(op, measured[op], predicted[op]) for op in ops if measured[op] >= _WORST_KINDS_SHARE * total]
        return sorted(kinds, key=lambda kind: -abs(math.log(kind.ratio)) if 0 < kind.ratio < math.inf else -math.inf)[:count]

    def to_dict(self) -> dict[str, Any]:
        """The `--json` object: summary keys, then the per-model rows."""
        return {
            "target": self.target,
            "runtime": self.runtime,
            "within_10pct": self.within(WITHIN[0]),
            "within_25pct": self.within(WITHIN[1]),
            "spearman": self.spearman(),
            "memory_within_10pct": self.within(WITHIN[0], memory=True),
            "memory_within_25pct": self.within(WITHIN[1], memory=True),
            "memory_spearman": self.spearman(memory=True),
            "worst_kinds": [{**asdict(kind), "ratio": kind.ratio} for kind in self.worst_kinds()],
            "median_noise": statistics.median(model.noise for model in self.models),
            "unattributed_ms": sum(model.measured_ms_by_op.get(UNATTRIBUTED, 0.0) for model in self.models),
            "provenance": dict(self.provenance),
            "models": [{**asdict(model), "error": model.error, "memory_error": model.memory_error} for model in self.models],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


Progress = Callable[[str, int, int], None]


class ValidationError(ValueError):
    """A target that cannot be validated on this host."""


def validate(
    profile: TargetProfile, measurements: Mapping[str, PreparedMeasurement], cases: Sequence[ModelCase] = VALIDATION_SET
) -> ValidationReport:
    """Set `profile`'s prediction beside the measurement of every case (`measure_set` made them;
    several profiles can be compared on one set of measurements).

    Measured times are taken at the load reference's speed the profile was calibrated at, or, for
    a profile not calibrated, at the least loaded one seen while measuring the set (`measure`).

    Raises:
        ValidationError: the profile is for another instruction set than this host's.
    """
    check_host(profile)
    cost_model = CostModel()
    calibrated = profile.calibration.get("provenance", {}).get("reference_ms")
    reference = calibrated or reference_ms([measurement.timing for measurement in measurements.values()])
    models = tuple(
        _compare(
            case, measurements[case.name], cost_model.estimate(measurements[case.name].prepared.description, profile), reference
        )
        for case in cases
    )
    provenance = next(iter(measurements.values())).provenance if measurements else {}
    return ValidationReport(profile.name, profile.runtime, models, {**provenance, "reference_ms": reference})


@dataclass(frozen=True)
class PreparedMeasurement:
    """A validation model lowered for a runtime and measured there."""

    prepared: PreparedModel
    weights: str
    timing: Timing
    measured_peak_bytes: int
    measured_shares: Mapping[tuple[str, ...], float]
    provenance: Mapping[str, Any]


def measure_set(
    backend: Backend, cases: Sequence[ModelCase], progress: Progress | None = None, timing: TimingPlan = VALIDATION_TIMING
) -> dict[str, PreparedMeasurement]:
    """Lower every case with `backend` and measure it (what `validate` compares against)."""
    prepared, timings = lower_and_time(backend, cases, timing, progress)
    return set_measurements(backend, cases, prepared, timings, progress)


def set_measurements(
    backend: Backend,
    cases: Sequence[ModelCase],
    prepared: Sequence[PreparedModel],
    timings: Sequence[Timing],
    progress: Progress | None = None,
) -> dict[str, PreparedMeasurement]:
    """The cases lowered with `backend` (`prepared`) and timed (`timings`), with their peak memory
    measured and their runs profiled."""
    provenance = host_provenance(backend.runtime)
    results = {}
    for index, (case, model, measured_time) in enumerate(zip(cases, prepared, timings)):
        if progress:
            progress(f"peak memory and profile ({case.name})", index, len(cases))
        memory = measure_peak_memory(model.graph, model.feeds)
        layers = {layer.name for layer in model.description.layers}
        results[case.name] = PreparedMeasurement(
            model, backend.weight_format(case), measured_time, memory.peak_bytes,
            _layer_shares(model, layers), provenance,
        )  # fmt: skip
    if progress:
        progress("peak memory and profile", len(cases), len(cases))
    return results


def check_host(profile: TargetProfile) -> None:
    """Refuse a profile of another instruction set than this host's (its measurements here would
    say nothing about it).

    Raises:
        ValidationError: naming both instruction sets.
    """
    if profile.isa and profile.isa != _host_isa():
        raise ValidationError(
            f"target {profile.name!r} is a profile for {profile.isa} CPUs and this host is {_host_isa()}: it cannot "
            "be validated here (its figures stay modelled)"
        )


def _host_isa() -> str:
    return os.uname().machine


def _compare(case: ModelCase, measurement: PreparedMeasurement, estimate: CostEstimate, reference: float) -> ModelValidation:
    """The case's prediction beside its measurement, taken at the load reference's time `reference` (ms)."""
    measured_ms = measurement.timing.at_reference(reference)
    lowering = get_runtime(estimate.runtime).lower(measurement.prepared.description)
    owner = {lowered.layer.name: lowered.fused_into or lowered.layer.name for lowered in lowering.layers}
    ops = {layer.name: layer_op(layer) for layer in measurement.prepared.description.layers}
    latency = {layer.name: layer.latency_ms for layer in estimate.layers}
    predicted: dict[str, float] = defaultdict(float)
    for layer in estimate.layers:
        predicted[ops[layer.name]] += layer.latency_ms
    predicted[INFERENCE_OP] += estimate.fixed_ms
    measured: dict[str, float] = defaultdict(float)
    for group, share in measurement.measured_shares.items():
        if not group:
            measured[UNATTRIBUTED] += share * measured_ms
            continue
        owners = [owner[layer] for layer in group]
        weights = [latency[layer] for layer in owners] if sum(latency[layer] for layer in owners) > 0 else [1.0] * len(owners)
        for layer, weight in zip(owners, weights):
            measured[ops[layer]] += share * measured_ms * weight / sum(weights)
    return ModelValidation(
        name=case.name,
        family=case.spec.family,
        weights=measurement.weights,
        predicted_ms=estimate.latency_ms,
        measured_ms=measured_ms,
        noise=max(measurement.timing.relative_iqr, measurement.timing.round_spread),
        predicted_peak_bytes=estimate.peak_memory_bytes,
        measured_peak_bytes=measurement.measured_peak_bytes,
        predicted_ms_by_op=dict(predicted),
        measured_ms_by_op=dict(measured),
    )


def _layer_shares(prepared: PreparedModel, layers: set[str]) -> dict[tuple[str, ...], float]:
    """Each layer's (or group of layers') share of a profiled run's node time, the profiler's own
    cost taken off (`hwcost.calibration.profiling`); () for nodes naming none."""
    return layer_shares(node_times_us(prepared.graph, prepared.feeds), layers)


def layer_shares(node_times: Mapping[str, float], layers: set[str]) -> dict[tuple[str, ...], float]:
    """Node times summed per layer (or group of layers, `_layers_of`) as shares of their total."""
    durations: dict[tuple[str, ...], float] = defaultdict(float)
    for node, duration in node_times.items():
        durations[_layers_of(node, layers)] += duration
    total = sum(durations.values())
    return {layer: duration / total for layer, duration in durations.items()} if total else {}


def _layers_of(node: str, layers: set[str]) -> tuple[str, ...]:
    """The layer a node runs: the longest layer name its module path starts with, or the layers
    inside its module when the module is not one layer; () when it names none.

    The exporter names a node `/scope/scope/.../Op`, a scope being a module's name relative to
    its parent, a container's item named after the container (`/layer1/layer1.0/relu1/Relu` is
    `layer1.0.relu1`, `/layer2/layer2.0/shortcut/shortcut.1/...` is `layer2.0.shortcut.1`); a
    module run a second time gets a `_1` suffix. Nodes onnxruntime adds keep a tensor's or a
    weight's name (`tdnn.norm.bias_DequantizeLinear/duplicated`).
    """
    scopes = node.split(" ")[-1].strip("/").split("/")  # "fused /linear/Gemm": a fused node's own name
    path = ""
    for scope in scopes[:-1] if len(scopes) > 1 else scopes:
        scope = _RUN_SUFFIX.sub("", scope)
        container = scope.split(".")[0]
        if path == container or path.endswith(f".{container}"):
            path = path[: len(path) - len(container)] + scope
        else:
            path = f"{path}.{scope}" if path else scope
    inside = tuple(sorted(layer for layer in layers if layer.startswith(f"{path}.")))
    if path not in layers and inside:
        return inside
    parts = path.split(".")
    for length in range(len(parts), 0, -1):
        candidate = ".".join(parts[:length])
        if candidate in layers:
            return (candidate,)
    return ()


def print_report(report: ValidationReport, write: Callable[[str], None] = print) -> None:
    """Predicted beside measured per model, then the summary."""
    write(f"target {report.target} (runtime {report.runtime}); measured on {report.provenance.get('cpu', '?')}, "
          f"load average {report.provenance.get('load_average_1min', '?')}")
    write(f"{'model':28} {'weights':24} {'predicted ms':>12} {'measured ms':>12} {'error':>7} {'noise':>6} "
          f"{'pred. MB':>9} {'meas. MB':>9} {'error':>7}")
    for model in report.models:
        write(
            f"{model.name:28} {model.weights:24} {model.predicted_ms:12.3f} {model.measured_ms:12.3f} {model.error:+7.1%} "
            f"{model.noise:6.1%} {model.predicted_peak_bytes / 1e6:9.2f} {model.measured_peak_bytes / 1e6:9.2f} "
            f"{model.memory_error:+7.1%}"
        )
    write(
        f"latency: {report.within(WITHIN[0]):.0%} within +-10%, {report.within(WITHIN[1]):.0%} within +-25%, "
        f"Spearman {report.spearman():.3f}"
    )
    write(
        f"peak memory: {report.within(WITHIN[0], memory=True):.0%} within +-10%, "
        f"{report.within(WITHIN[1], memory=True):.0%} within +-25%, Spearman {report.spearman(memory=True):.3f}"
    )
    kinds = ", ".join(
        f"{kind.op} {kind.ratio:.2f}x ({kind.measured_ms:.2f} of {kind.predicted_ms:.2f} ms)" for kind in report.worst_kinds()
    )
    write(f"worst layer kinds (measured / predicted over the set): {kinds}")


__all__ = [
    "TINY_SET",
    "VALIDATION_SET",
    "VALIDATION_SETS",
    "KindError",
    "ModelValidation",
    "PreparedMeasurement",
    "ValidationError",
    "ValidationReport",
    "check_host",
    "layer_shares",
    "measure_set",
    "set_measurements",
    "print_report",
    "validate",
]
