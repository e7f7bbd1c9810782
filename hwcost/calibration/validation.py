"""`search hwcost validate`: the cost model against onnxruntime on a fixed set of whole models.

The validation set is every family the cost model prices for search (ResNet, ECAPA-TDNN,
x-vector, the extractor, GE2E) at several widths and depths, fixed here so that accuracy figures
compare across calibrations. Calibration never times a whole model (`hwcost.calibration.cases`),
so none of these is part of a fit. Each model is lowered in the target runtime's format
(`hwcost.calibration.backends`: float; weight-only in a rotation of uniform and table-decoded
codes; static int8 with 8-bit activations), timed on one thread (median CPU time), its peak
memory measured in a fresh process, and both set beside the target's prediction.

Worst layer kinds: one profiled session per model gives each graph node's share of the run; a
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
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
from scipy.stats import spearmanr

from hwcost.calibration.backends import PreparedModel, get_backend
from hwcost.calibration.cases import TABLE_CODES, UNIFORM_CODES, ModelCase
from hwcost.calibration.measure import (
    VALIDATION_TIMING,
    TimingPlan,
    host_provenance,
    measure_peak_memory,
    session_options,
    time_graph,
)
from hwcost.estimator import CostEstimate, CostModel
from hwcost.kernels import INFERENCE_OP, layer_op
from hwcost.profile import TargetProfile
from hwcost.runtimes import get_runtime
from spaces.compress import ModelSpec

FRAMES_PER_SECOND = 100
"""Filterbank frames per second of audio (10 ms hop), as every verification config uses."""

PROFILED_RUNS = 10
"""Runs of the profiled session that attributes time to layer kinds."""

UNATTRIBUTED = "unattributed"
"""Op of measured time whose graph node names no description layer (input transposes, Res2Net splits)."""

WITHIN = (0.10, 0.25)
"""Relative error bounds the summary counts models within."""

_WEIGHT_ONLY_ROTATION = (UNIFORM_CODES, ("uniform", 4), TABLE_CODES, ("pow2", 4))
"""Weight-only formats given to the validation models in turn: decoded per run and folded at load."""

_WORST_KINDS = 5
_RUN_SUFFIX = re.compile(r"_\d+$")
"""The exporter's suffix on the scope of a module's second and later runs."""


def _filterbank(name: str, family: str, bins: int = 40, **kwargs: Any) -> tuple[str, ModelSpec, tuple[str, ...]]:
    return name, ModelSpec(family, {"num_mel_bins": bins, **kwargs}, bins, FRAMES_PER_SECOND, 16000), ("features",)


def _audio(name: str, sample_rate: int, **kwargs: Any) -> tuple[str, ModelSpec, tuple[str, ...]]:
    return name, ModelSpec("extractor", kwargs, 0, 0, sample_rate), ("mixture", "enrollment")


_MODELS = (
    _filterbank("resnet-w8-b1111", "resnet", base_width=8, blocks=(1, 1, 1, 1), embedding_dim=128),
    _filterbank("resnet-w8-b1111-80bins", "resnet", 80, base_width=8, blocks=(1, 1, 1, 1), embedding_dim=128),
    _filterbank("resnet-w16-b1111", "resnet", base_width=16, blocks=(1, 1, 1, 1), embedding_dim=128),
    _filterbank("resnet-w8-b2222", "resnet", base_width=8, blocks=(2, 2, 2, 2), embedding_dim=128),
    _filterbank("resnet-w12-b2332", "resnet", base_width=12, blocks=(2, 3, 3, 2), embedding_dim=192),
    _filterbank("resnet-w16-b2222-80bins", "resnet", 80, base_width=16, blocks=(2, 2, 2, 2), embedding_dim=256),
    _filterbank("resnet-w32-b1111", "resnet", base_width=32, blocks=(1, 1, 1, 1), embedding_dim=128),
    _filterbank("resnet-w24-b3463", "resnet", base_width=24, blocks=(3, 4, 6, 3), embedding_dim=256),
    _filterbank("ecapa-c32", "ecapa_tdnn", channels=32, scale=4, se_channels=8, attention_channels=8, mfa_channels=96, embedding_dim=64),
    _filterbank("ecapa-c48", "ecapa_tdnn", channels=48, scale=4, se_channels=12, attention_channels=12, mfa_channels=144, embedding_dim=64),
    _filterbank("ecapa-c64", "ecapa_tdnn", channels=64, scale=4, se_channels=16, attention_channels=16, mfa_channels=192, embedding_dim=128),
    _filterbank("ecapa-c96", "ecapa_tdnn", channels=96, scale=4, se_channels=24, attention_channels=24, mfa_channels=288, embedding_dim=96),
    _filterbank("ecapa-c128-2blocks", "ecapa_tdnn", channels=128, scale=4, se_channels=32, attention_channels=32, mfa_channels=256, embedding_dim=128, blocks=2),
    _filterbank("ecapa-c256-80bins", "ecapa_tdnn", 80, channels=256, scale=8, se_channels=64, attention_channels=64, mfa_channels=768, embedding_dim=192),
    _filterbank("ecapa-c512-80bins", "ecapa_tdnn", 80, channels=512, scale=8, se_channels=128, attention_channels=128, mfa_channels=1536, embedding_dim=192),
    _filterbank("xvector-c32", "xvector", channels=32, pooling_channels=96, embedding_dim=32),
    _filterbank("xvector-c64", "xvector", channels=64, pooling_channels=192, embedding_dim=64),
    _filterbank("xvector-c128", "xvector", channels=128, pooling_channels=384, embedding_dim=128),
    _filterbank("xvector-c192-4layers", "xvector", channels=192, pooling_channels=512, embedding_dim=128, frame_layers=4),
    _filterbank("xvector-c256", "xvector", channels=256, pooling_channels=768, embedding_dim=256),
    _filterbank("xvector-c512-80bins", "xvector", 80, channels=512, pooling_channels=1500, embedding_dim=512),
    _audio("extractor-f32-x2r2", 8000, filters=32, window=16, bottleneck=32, hidden=48, skip_channels=32, blocks=2, stacks=2, embedding_dim=32),
    _audio("extractor-f64-x3r2", 8000, filters=64, window=16, bottleneck=64, hidden=128, skip_channels=64, blocks=3, stacks=2, embedding_dim=64),
    _audio("extractor-f64-x5r3", 8000, filters=64, window=32, bottleneck=32, hidden=64, skip_channels=32, blocks=5, stacks=3, embedding_dim=32),
    _audio("extractor-f256-x4r3", 8000, filters=256, window=32, bottleneck=64, hidden=128, skip_channels=64, blocks=4, stacks=3, embedding_dim=64),
    _audio("extractor-f128-x4r2-16k", 16000, filters=128, window=32, bottleneck=96, hidden=192, skip_channels=96, blocks=4, stacks=2, embedding_dim=64),
    _audio("extractor-f256-x3r3-16k", 16000, filters=256, window=64, bottleneck=128, hidden=256, skip_channels=128, blocks=3, stacks=3, embedding_dim=64),
    _filterbank("ge2e-h64-l2", "ge2e", hidden_size=64, embedding_dim=64, num_layers=2),
    _filterbank("ge2e-h96-l3", "ge2e", hidden_size=96, embedding_dim=96, num_layers=3),
    _filterbank("ge2e-h128-l3", "ge2e", hidden_size=128, embedding_dim=128, num_layers=3),
    _filterbank("ge2e-h192-l1", "ge2e", hidden_size=192, embedding_dim=128, num_layers=1),
    _filterbank("ge2e-h256-l3", "ge2e", hidden_size=256, embedding_dim=256, num_layers=3),
    _filterbank("ge2e-h384-l2", "ge2e", hidden_size=384, embedding_dim=256, num_layers=2),
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
        weights: How its weights are stored for the runtime (e.g. "fp32", "uniform-8", "int8 + 8-bit activations").
        predicted_ms, measured_ms: Latency for one second of audio.
        noise: Relative interquartile range of the timed runs.
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
        among those with at least 1% of the measured time."""
        measured: dict[str, float] = defaultdict(float)
        predicted: dict[str, float] = defaultdict(float)
        for model in self.models:
            for op, value in model.measured_ms_by_op.items():
                measured[op] += value
            for op, value in model.predicted_ms_by_op.items():
                predicted[op] += value
        total = sum(measured.values())
        kinds = [KindError(op, measured[op], predicted[op]) for op in set(measured) | set(predicted) if measured[op] >= 0.01 * total]
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
            "provenance": dict(self.provenance),
            "models": [{**asdict(model), "error": model.error, "memory_error": model.memory_error} for model in self.models],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


Progress = Callable[[str, int, int], None]


class ValidationError(ValueError):
    """A target that cannot be validated on this host."""


def validate(
    profile: TargetProfile,
    cases: Sequence[ModelCase] = VALIDATION_SET,
    progress: Progress | None = None,
    measured: Mapping[str, PreparedMeasurement] | None = None,
    timing: TimingPlan = VALIDATION_TIMING,
) -> ValidationReport:
    """Measure every case in `profile`'s runtime and set the prediction beside it.

    `measured` reuses earlier measurements of the same cases and runtime (to compare profiles
    without timing twice); `measure_set` makes them.

    Raises:
        ValidationError: the profile is for another instruction set than this host's.
        BackendError: its runtime cannot run here (modelled only).
    """
    _check_host(profile)
    measurements = measured if measured is not None else measure_set(profile.runtime, cases, progress, timing)
    cost_model = CostModel()
    models = tuple(_compare(case, measurements[case.name], cost_model.estimate(measurements[case.name].prepared.description, profile)) for case in cases)
    provenance = next(iter(measurements.values())).provenance if measurements else {}
    return ValidationReport(profile.name, profile.runtime, models, provenance)


@dataclass(frozen=True)
class PreparedMeasurement:
    """A validation model lowered for a runtime and measured there."""

    prepared: PreparedModel
    weights: str
    measured_ms: float
    noise: float
    measured_peak_bytes: int
    measured_shares: Mapping[tuple[str, ...], float]
    provenance: Mapping[str, Any]


def measure_set(
    runtime: str, cases: Sequence[ModelCase], progress: Progress | None = None, timing: TimingPlan = VALIDATION_TIMING
) -> dict[str, PreparedMeasurement]:
    """Lower and measure every case under `runtime` (what `validate` compares against)."""
    backend = get_backend(runtime)
    provenance = host_provenance(runtime)
    results = {}
    for index, case in enumerate(cases):
        if progress:
            progress(f"measuring ({case.name})", index, len(cases))
        prepared = backend.prepare(case)
        measured_time = time_graph(prepared.graph, prepared.feeds, timing)
        memory = measure_peak_memory(prepared.graph, prepared.feeds)
        layers = {layer.name for layer in prepared.description.layers}
        results[case.name] = PreparedMeasurement(
            prepared, backend.weight_format(case), measured_time.median_ms, measured_time.relative_iqr, memory.peak_bytes,
            _layer_shares(prepared, layers), provenance,
        )  # fmt: skip
    if progress:
        progress("measuring", len(cases), len(cases))
    return results


def _check_host(profile: TargetProfile) -> None:
    if profile.isa and profile.isa != _host_isa():
        raise ValidationError(
            f"target {profile.name!r} is a profile for {profile.isa} CPUs and this host is {_host_isa()}: it cannot "
            "be validated here (its figures stay modelled)"
        )


def _host_isa() -> str:
    return os.uname().machine


def _compare(case: ModelCase, measurement: PreparedMeasurement, estimate: CostEstimate) -> ModelValidation:
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
            measured[UNATTRIBUTED] += share * measurement.measured_ms
            continue
        owners = [owner[layer] for layer in group]
        weights = [latency[layer] for layer in owners] if sum(latency[layer] for layer in owners) > 0 else [1.0] * len(owners)
        for layer, weight in zip(owners, weights):
            measured[ops[layer]] += share * measurement.measured_ms * weight / sum(weights)
    return ModelValidation(
        name=case.name,
        family=case.spec.family,
        weights=measurement.weights,
        predicted_ms=estimate.latency_ms,
        measured_ms=measurement.measured_ms,
        noise=measurement.noise,
        predicted_peak_bytes=estimate.peak_memory_bytes,
        measured_peak_bytes=measurement.measured_peak_bytes,
        predicted_ms_by_op=dict(predicted),
        measured_ms_by_op=dict(measured),
    )


def _layer_shares(prepared: PreparedModel, layers: set[str]) -> dict[tuple[str, ...], float]:
    """Each layer's (or group of layers') share of a profiled run's node time; () for nodes naming none."""
    with tempfile.TemporaryDirectory(prefix="hwcost-profile-") as folder:
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = onnxruntime.InferenceSession(prepared.graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(PROFILED_RUNS):
            session.run(None, prepared.feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[tuple[str, ...], float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations[_layers_of(event["name"].removesuffix("_kernel_time"), layers)] += event["dur"]
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
    kinds = ", ".join(f"{kind.op} {kind.ratio:.2f}x ({kind.measured_ms:.2f} of {kind.predicted_ms:.2f} ms)" for kind in report.worst_kinds())
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
    "measure_set",
    "print_report",
    "validate",
]
