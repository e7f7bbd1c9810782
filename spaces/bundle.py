"""Deployment bundles: the folder `search export` writes, its config schema, and `load_bundle`.

Layout::

    config.json     `BundleConfig`: task, model family and arguments, per-layer quantization,
                    feature settings, input/output tensors, size and checksum of weights.bin,
                    where the model came from and how it was measured
    weights.bin     the packed weights file (`spaces.quant.packing`); its length is the model's
                    `size_bytes`
    model.onnx      the same model for onnxruntime, quantized layers as integer weights
    MODEL_CARD.md   metrics, costs, data, and how to load and run the model
    runner.py       verification bundles: audio -> embedding -> score and decision with numpy,
                    onnxruntime, soundfile and soxr only (`spaces.bundle_runner`, copied)

`config.json` and `weights.bin` alone rebuild the PyTorch model (`load_bundle`); nothing of the
run that produced it is needed. A bundle names its task and its input and output tensors
(symbolic axes such as "batch" or "frames" vary), so a speaker-verification bundle (features ->
embedding) and a speaker-extraction bundle (mixture + enrollment -> estimate) share this format;
a task adds its signature beside `verification_signature`.

A model that embeds partial windows (GE2E) takes a batch of windows and returns one embedding
per window; its `FeatureSettings.windows` (`PartialWindows`) records how an utterance is cut into
windows and how their embeddings become the utterance's. `FeatureSettings.frontend` states every
step from an audio file to the features, and `BundleConfig.decision` the calibrated thresholds,
so that `runner.py` needs nothing but config.json and model.onnx.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaces.compress import CompressedModel, ModelSpec, PackedModelError, rebuild_compressed, stored_quantized
from spaces.description import FLOAT_BITS
from spaces.plan import LayerQuantization
from spaces.quant import PackedFileError, QuantizedWeight, unpack_weights
from spaces.quant.base import SIDE_BITS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.bin"
ONNX_FILE = "model.onnx"
MODEL_CARD_FILE = "MODEL_CARD.md"
RUNNER_FILE = "runner.py"

FORMAT = "speaker-compress-bundle"
VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be read or does not rebuild; the message names the file and key."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: its name and shape (ints are fixed sizes, strings symbolic axes)."""

    name: str
    shape: tuple[int | str, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> symbolic name, for the axes that vary (ONNX export)."""
        return {index: size for index, size in enumerate(self.shape) if isinstance(size, str)}


L2_NORMALISED_MEAN = "l2_normalised_mean"
"""The window pooling of GE2E's utterance embedding (`POOLINGS` says what it computes)."""
POOLINGS = {L2_NORMALISED_MEAN: "the mean of the window embeddings divided by its L2 norm"}
"""Every `PartialWindows.pooling` a bundle may name, with what it computes in words (model cards)."""

_SMALLEST_NORM = 1e-12
"""The norm `torch.nn.functional.normalize` floors at, so an all-zero mean stays zero."""


@dataclass(frozen=True)
class PartialWindows:
    """How a windowed front-end cuts an utterance into the model's input and pools its outputs.

    The model sees only fixed-length windows; a deployer must cut and pool exactly as the
    front-end did when the metrics were measured, so the bundle records both.

    Attributes:
        frontend: The front-end computing the windows (`evaluators.frontends.get_frontend(frontend)`:
            its `features(audio)` gives `[windows, frames, num_mel_bins]` of one utterance).
        frames: Frames per window.
        step_frames: Frames from one window's start to the next's.
        min_coverage: Least share of real audio (not padding) the last window needs to be kept
            (an utterance's only window always is).
        pooling: How the window embeddings become the utterance's (one of `POOLINGS`).
    """

    frontend: str
    frames: int
    step_frames: int
    min_coverage: float
    pooling: str = L2_NORMALISED_MEAN

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: expected one of {list(POOLINGS)}")

    def utterance_embedding(self, window_embeddings: np.ndarray) -> np.ndarray:
        """The utterance's embedding from its windows' `[windows, embedding_dim]` (the one pooling there is)."""
        mean = window_embeddings.astype(np.float32).mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), _SMALLEST_NORM)


@dataclass(frozen=True)
class FeatureSettings:
    """The front end that turns audio into the model's "features" input.

    By default Kaldi-compatible log-mel filterbanks (`evaluators.features.compute_fbank`:
    kaldi-native-fbank, no dither, snip edges, audio scaled to int16 range) with per-utterance
    mean normalisation; `kind` names another front-end.

    Attributes:
        windows: For a windowed front-end, how utterances become windows and window embeddings
            one embedding; None when the model reads an utterance's frames at once (and in
            bundles written before windowed models could be exported).
        frontend: Every step from an audio file to the features, with its parameters
            (`search.tasks.frontend_spec`; `spaces.bundle_runner` computes it); None in bundles
            written before it existed.
    """

    num_mel_bins: int
    frame_length_ms: float
    frame_shift_ms: float
    kind: str = "kaldi-fbank, utterance mean normalised"
    windows: PartialWindows | None = None
    frontend: dict[str, Any] | None = None

    @property
    def frames_per_second(self) -> int:
        """Frames the model reads per second of audio: the frame rate, times the overlap of windows."""
        rate = 1000.0 / self.frame_shift_ms
        if self.windows is not None:
            rate *= self.windows.frames / self.windows.step_frames
        return round(rate)


@dataclass(frozen=True)
class BundleConfig:
    """What `config.json` holds.

    Attributes:
        task: The task the model serves (a `search.tasks` name; this layer does not interpret it).
        family: Model family (registry key of `spaces.models`).
        model_arguments: Keyword arguments of the family.
        sample_rate: Audio sample rate in Hz.
        features: Front end of the "features" input; None for raw-audio models (extraction).
        layers: Quantization of each quantized layer; layers not named are FP32.
        inputs: Input tensors, in the model's argument order.
        outputs: Output tensors.
        size_bytes: Length of weights.bin.
        weights_sha256: SHA-256 of weights.bin.
        share_repeated_blocks: Repeated blocks share one set of weights (`spaces.sharing`).
        activation_bits: Bits of quantized activations (32: float activations).
        side_bits: Storage precision of the side data in weights.bin (`space.side_bits`; absent
            in bundles written before it existed, which stored it as float32).
        source: Provenance: run directory, trial number, selection, candidate.
        evaluation: How the metrics were measured: corpus settings, scored trials, seed, targets.
        metrics: The model's metrics as measured at export.
        decision: How scores become decisions: thresholds calibrated on held-out evaluation data
            and their error rates (`search.tasks.verification_threshold`); empty for tasks
            without one and in bundles written before it existed.
    """

    task: str
    family: str
    model_arguments: dict[str, Any]
    sample_rate: int
    features: FeatureSettings | None
    layers: dict[str, LayerQuantization]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    size_bytes: int
    weights_sha256: str
    share_repeated_blocks: bool = False
    activation_bits: int = FLOAT_BITS
    side_bits: int = FLOAT_BITS
    source: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)

    def model_spec(self) -> ModelSpec:
        features = self.features
        return ModelSpec(
            family=self.family,
            kwargs=dict(self.model_arguments),
            num_mel_bins=features.num_mel_bins if features else 0,
            frames_per_second=features.frames_per_second if features else 0,
            sample_rate=self.sample_rate,
            side_bits=self.side_bits,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": FORMAT, "version": VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = CONFIG_FILE) -> BundleConfig:
        """Validate a parsed config.json; every problem names `source` and the key."""
        reader = _Reader(source)
        reader.expect(data.get("format") == FORMAT, "format", data.get("format"), f"expected {FORMAT!r}")
        reader.expect(data.get("version") == VERSION, "version", data.get("version"), f"expected {VERSION}")
        task = reader.get(data, "task", str)
        reader.expect(bool(task), "task", task, "expected a task name")
        features = reader.get(data, "features", dict) if data.get("features") is not None else None
        layers = reader.get(data, "layers", dict)
        side_bits = reader.get(data, "side_bits", int) if "side_bits" in data else FLOAT_BITS
        reader.expect(side_bits in SIDE_BITS, "side_bits", side_bits, f"expected one of {list(SIDE_BITS)}")
        try:
            return cls(
                task=task,
                family=reader.get(data, "family", str),
                model_arguments=reader.get(data, "model_arguments", dict),
                sample_rate=reader.get(data, "sample_rate", int),
                features=_feature_settings(reader, features) if features is not None else None,
                layers={name: LayerQuantization(**layer) for name, layer in layers.items()},
                inputs=tuple(_tensor_spec(item) for item in reader.get(data, "inputs", list)),
                outputs=tuple(_tensor_spec(item) for item in reader.get(data, "outputs", list)),
                size_bytes=reader.get(data, "size_bytes", int),
                weights_sha256=reader.get(data, "weights_sha256", str),
                share_repeated_blocks=reader.get(data, "share_repeated_blocks", bool),
                activation_bits=reader.get(data, "activation_bits", int),
                side_bits=side_bits,
                source=reader.get(data, "source", dict),
                evaluation=reader.get(data, "evaluation", dict),
                metrics=reader.get(data, "metrics", dict),
                decision=reader.get(data, "decision", dict) if "decision" in data else {},
            )
        except TypeError as error:  # unknown or missing keys inside a block
            raise BundleError(f"{source}: {error}") from None


@dataclass
class Bundle:
    """A loaded bundle: its config and the rebuilt model with its packed weights and description.

    Attributes:
        path: The bundle folder.
        config: Its config.json.
        compressed: The PyTorch model, its packed weights (weights.bin, byte for byte) and its
            `ModelDescription` for the cost model.
        quantized: Quantized layer name -> its codes and side data, as stored in weights.bin.
    """

    path: Path
    config: BundleConfig
    compressed: CompressedModel
    quantized: dict[str, QuantizedWeight]

    @property
    def model(self) -> torch.nn.Module:
        return self.compressed.model


def verification_signature(
    num_mel_bins: int, embedding_dim: int, windowed: bool = False
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a speaker-embedding model: filterbank frames in, one embedding out.

    A windowed model's batch is the partial windows of one utterance ("windows"): one embedding
    per window comes out, pooled into the utterance's as its `PartialWindows` says.
    """
    batch = "windows" if windowed else "batch"
    return (
        (TensorSpec("features", (batch, "frames", num_mel_bins)),),
        (TensorSpec("embedding", (batch, embedding_dim)),),
    )


def extraction_signature() -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a target-speaker extractor: mixture and enrollment audio in, the
    target's estimate (as long as the mixture) out; waveforms in [-1, 1] at the bundle's sample rate."""
    return (
        (TensorSpec("mixture", ("batch", "samples")), TensorSpec("enrollment", ("batch", "enrollment_samples"))),
        (TensorSpec("estimate", ("batch", "samples")),),
    )


def example_inputs(config: BundleConfig) -> dict[str, torch.Tensor]:
    """Zero inputs holding one second of audio (batch 1): the unit the cost model prices.

    Symbolic axes: "batch" and "windows" (1), "frames" (feature frames the model reads per second:
    `FeatureSettings.frames_per_second`), "samples" and "enrollment_samples" (the sample rate).
    """
    sizes = {"batch": 1, "windows": 1, "samples": config.sample_rate, "enrollment_samples": config.sample_rate}
    if config.features is not None:
        sizes["frames"] = config.features.frames_per_second
    tensors = {}
    for spec in config.inputs:
        unknown = [axis for axis in spec.shape if isinstance(axis, str) and axis not in sizes]
        if unknown:
            raise BundleError(f"input {spec.name!r}: unknown axis {unknown[0]!r}; expected one of {list(sizes)}")
        tensors[spec.name] = torch.zeros(*(sizes[axis] if isinstance(axis, str) else axis for axis in spec.shape))
    return tensors


def weights_digest(packed: bytes) -> str:
    return hashlib.sha256(packed).hexdigest()


def write_bundle_config(path: str | os.PathLike, config: BundleConfig) -> Path:
    """Write `path/config.json`; returns its path."""
    target = Path(path) / CONFIG_FILE
    target.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return target


def read_bundle_config(path: str | os.PathLike) -> BundleConfig:
    """Read and validate `path/config.json`."""
    source = Path(path) / CONFIG_FILE
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise BundleError(f"{source}: missing; is {path} a bundle written by `search export`?") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{source}: corrupt JSON ({error})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{source}: top level must be an object, got {type(data).__name__}")
    return BundleConfig.from_dict(data, str(source))


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Rebuild a bundle's PyTorch model from config.json and weights.bin alone.

    weights.bin must match the config (length, checksum, quantized layers) and the rebuilt model
    must pack back to the same bytes, so the model returned is exactly the one that was exported.
    A bundle with quantized activations (`activation_bits`) gets back the frozen activation
    quantizers whose steps weights.bin stores, where their names say, so PyTorch computes what
    the integer graph in model.onnx computes.

    Raises:
        BundleError: A missing, corrupt or inconsistent file, named with the key or layer at fault.
    """
    folder = Path(path)
    config = read_bundle_config(folder)
    weights_path = folder / WEIGHTS_FILE
    try:
        packed = weights_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{weights_path}: missing") from None
    if len(packed) != config.size_bytes:
        raise BundleError(f"{weights_path}: {len(packed)} bytes, but {CONFIG_FILE} says size_bytes={config.size_bytes}")
    if weights_digest(packed) != config.weights_sha256:
        raise BundleError(f"{weights_path}: SHA-256 differs from {CONFIG_FILE}'s weights_sha256 (the file was changed)")
    try:
        entries = unpack_weights(packed)
    except PackedFileError as error:
        raise BundleError(f"{weights_path}: {error}") from None
    quantized = stored_quantized(entries)
    _check_finite(entries, weights_path)
    _check_layers(quantized, config, weights_path)
    try:
        compressed = rebuild_compressed(config.model_spec(), packed, config.share_repeated_blocks, config.activation_bits)
    except PackedModelError as error:
        raise BundleError(f"{weights_path}: {error}") from None
    except ValueError as error:  # model arguments the family rejects
        raise BundleError(f"{folder / CONFIG_FILE}: {error}") from None
    return Bundle(folder, config, compressed, quantized)


def _check_finite(entries: Mapping[str, Any], weights_path: Path) -> None:
    """Every stored float (FP32 tensors, scales, codebooks) is finite: a NaN would make every output NaN.

    The checksum only proves the file is the one config.json names; a file edited together with
    its checksum can still carry values no exported model has.
    """
    for key, entry in entries.items():
        tensors = entry.side.items() if isinstance(entry, QuantizedWeight) else [("values", entry)]
        for part, tensor in tensors:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise BundleError(f"{weights_path}: {key} ({part}) holds non-finite values (NaN or infinity)")


def _check_layers(quantized: Mapping[str, QuantizedWeight], config: BundleConfig, weights_path: Path) -> None:
    """The quantized layers of weights.bin are exactly those of the config, at its bits and quantizers."""
    stored = {name: LayerQuantization(weight.bits, weight.quantizer) for name, weight in quantized.items()}
    if stored != config.layers:
        differing = sorted(name for name in set(stored) | set(config.layers) if stored.get(name) != config.layers.get(name))
        name = differing[0]
        raise BundleError(
            f"{weights_path}: layer {name!r} is stored as {stored.get(name)} but {CONFIG_FILE} says "
            f"{config.layers.get(name)} ({len(differing)} layer(s) differ)"
        )


def _feature_settings(reader: _Reader, block: Mapping[str, Any]) -> FeatureSettings:
    """The `features` block, its `windows` and `frontend` blocks (absent in older bundles) included.

    Raises:
        TypeError: Unknown or missing keys (`from_dict` names the file).
    """
    features = dict(block)
    frontend = features.get("frontend")
    reader.expect(frontend is None or isinstance(frontend, dict), "features.frontend", frontend, "expected an object")
    windows = features.pop("windows", None)
    if windows is None:
        return FeatureSettings(**features)
    reader.expect(isinstance(windows, dict), "features.windows", windows, "expected an object")
    try:
        partial = PartialWindows(**windows)
    except ValueError as error:  # a pooling this version does not know
        raise BundleError(f"{reader.source}: features.windows: {error}") from None
    return FeatureSettings(**features, windows=partial)


def _tensor_spec(item: Any) -> TensorSpec:
    if not isinstance(item, Mapping) or set(item) != {"name", "shape"}:
        raise TypeError(f"tensor {item!r}: expected an object with 'name' and 'shape'")
    return TensorSpec(str(item["name"]), tuple(item["shape"]))


@dataclass(frozen=True)
class _Reader:
    """Typed access to config.json keys with errors naming the file and key."""

    source: str

    def get(self, data: Mapping[str, Any], key: str, kind: type) -> Any:
        if key not in data:
            raise BundleError(f"{self.source}: missing key {key!r}")
        value = data[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        self.expect(ok, key, value, f"expected {kind.__name__}")
        return value

    def expect(self, condition: bool, key: str, value: Any, reason: str) -> None:
        if not condition:
            raise BundleError(f"{self.source}: {key}={value!r}: {reason}")


__all__ = [
    "CONFIG_FILE",
    "MODEL_CARD_FILE",
    "ONNX_FILE",
    "RUNNER_FILE",
    "WEIGHTS_FILE",
    "Bundle",
    "BundleConfig",
    "BundleError",
    "FeatureSettings",
    "L2_NORMALISED_MEAN",
    "POOLINGS",
    "PartialWindows",
    "TensorSpec",
    "example_inputs",
    "extraction_signature",
    "load_bundle",
    "read_bundle_config",
    "verification_signature",
    "weights_digest",
    "write_bundle_config",
]
