"""Trained weights from checkpoint files: ours, WeSpeaker's, SpeechBrain's and resemblyzer's.

Every file is read with `torch.load(weights_only=True)`: tensors, numbers, strings and plain
containers only, so a checkpoint cannot run code; one that pickles anything else is refused.
A format says where the model's tensors sit in the file and which entries are not the model's:

- `native`: written by `save_native_checkpoint` (the state dict plus the `ModelSpec` that builds
  the model), or a bare state dict of one of our models;
- `wespeaker`: a bare state dict, or one under "state_dict"; the training head `projection.*`
  (AAM softmax weights) is dropped;
- `speechbrain`: `embedding_model.ckpt`, a bare state dict;
- `resemblyzer`: `pretrained.pt`, a dict whose "model_state" holds the weights; the GE2E loss
  terms `similarity_weight` / `similarity_bias` are dropped (and "step", "optimizer_state" unused);
- `auto`: the format recognised from the file's keys (see `sniff_format`).

The tensors must then match the model exactly: same names, same shapes. The one tolerance is a
missing batch-norm `num_batches_tracked` counter (older checkpoints lack it; inference never
reads it), which is taken from the model.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spaces.compress import ModelSpec
from spaces.models.recurrent import torch_lstm_keys_renamed

CHECKPOINT_FORMATS = ("native", "wespeaker", "speechbrain", "resemblyzer", "auto")
"""Values of `format` that `load_checkpoint` accepts."""

NATIVE_FORMAT_TAG = "speaker-compress-checkpoint/1"
"""The `format` entry of a native checkpoint file; a later incompatible layout gets a new number."""

WESPEAKER_HEAD_PREFIX = "projection."
"""WeSpeaker's training-only classification head (bin/train.py adds it as `projection`)."""

RESEMBLYZER_LOSS_KEYS = ("similarity_weight", "similarity_bias")
"""GE2E loss scale and bias, saved beside resemblyzer's encoder weights."""

OPTIONAL_KEY_SUFFIX = "num_batches_tracked"
"""Batch-norm step counters: absent from older checkpoints, unused at inference."""

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
"""How torch's weights-only unpickler names an object it will not create."""

_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", re.DOTALL)
"""The unpickler's own reason in torch's error message."""

LISTED_KEYS = 5
"""How many keys of each kind of mismatch an error message names."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


@dataclasses.dataclass(frozen=True)
class NativeCheckpoint:
    """A checkpoint written by `save_native_checkpoint`.

    Attributes:
        spec: How to build the model the weights belong to.
        state_dict: The model's tensors.
    """

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]


def load_checkpoint(path: str | os.PathLike[str], format: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of `model` from the checkpoint at `path`, checked to match it exactly.

    The model is not modified: pass the result to `model.load_state_dict` (strict loading
    succeeds) or to `spaces.compress.compress`.

    Args:
        path: The checkpoint file.
        format: One of `CHECKPOINT_FORMATS`.
        model: A model built with the architecture the checkpoint was trained with.

    Raises:
        CheckpointError: An unknown format, an unreadable file or one that pickles objects
            other than tensors and plain containers, or tensors that do not match the model
            (missing, unexpected and reshaped keys are listed with their counts).
    """
    if format not in CHECKPOINT_FORMATS:
        raise CheckpointError(
            f"checkpoint {path}: unknown format {format!r}; expected one of {list(CHECKPOINT_FORMATS)}"
        )
    content = _read(path)
    chosen = sniff_format(content, path) if format == "auto" else format
    state = _EXTRACTORS[chosen](content, path, chosen)
    return _matched(state, model, f"{path} (read as {chosen})")


PACKAGE_PREFIX = "package:"
"""`package:DIST/PATH`: the file PATH (relative to the install root, e.g. `resemblyzer/pretrained.pt`)
of the installed distribution DIST, the first part of PATH; weights a wheel ships are found there
without importing the package."""


def resolve_checkpoint_path(text: str) -> Path:
    """The file a `teacher.checkpoint` value names: a path, or a file inside an installed package.

    Raises:
        CheckpointError: The package is not installed, or the file is not where it says.
    """
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text)
    inside = text[len(PACKAGE_PREFIX) :]
    distribution = inside.split("/", 1)[0]
    try:
        located = Path(str(importlib.metadata.distribution(distribution).locate_file(inside)))
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"checkpoint {text}: package {distribution!r} is not installed") from None
    if not located.is_file():
        raise CheckpointError(f"checkpoint {text}: {located} does not exist in the installed {distribution!r}")
    return located


def sniff_format(content: Any, path: str | os.PathLike[str]) -> str:
    """The format of a loaded checkpoint, from its keys.

    A native tag -> native; "model_state" -> resemblyzer; a "state_dict" wrapper or a
    `projection.*` head -> wespeaker; any other flat dict of tensors -> speechbrain (which, like
    a bare native or head-less WeSpeaker state dict, is read as it is).

    Raises:
        CheckpointError: The content is not a dict.
    """
    if not isinstance(content, dict):
        raise CheckpointError(f"checkpoint {path}: holds a {type(content).__name__}, not a dict of tensors")
    if content.get("format") == NATIVE_FORMAT_TAG:
        return "native"
    if "model_state" in content:
        return "resemblyzer"
    if "state_dict" in content or any(str(key).startswith(WESPEAKER_HEAD_PREFIX) for key in content):
        return "wespeaker"
    return "speechbrain"


def save_native_checkpoint(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], spec: ModelSpec
) -> None:
    """Write `state_dict` with the spec that builds its model, for `read_native_checkpoint` / `load_checkpoint`.

    Raises:
        CheckpointError: The state dict does not fit the model `spec` builds.
    """
    state = _matched(dict(state_dict), spec.build(), f"{path} (to be written)")
    content = {
        "format": NATIVE_FORMAT_TAG,
        "spec": dataclasses.asdict(spec),
        "state_dict": {key: tensor.detach().cpu().clone() for key, tensor in state.items()},
    }
    torch.save(content, path)


def read_native_checkpoint(path: str | os.PathLike[str]) -> NativeCheckpoint:
    """The spec and tensors of a file `save_native_checkpoint` wrote, checked to match each other.

    Raises:
        CheckpointError: Not a native checkpoint, or tensors that do not fit its own spec.
    """
    content = _read(path)
    if not isinstance(content, dict) or content.get("format") != NATIVE_FORMAT_TAG or "spec" not in content:
        raise CheckpointError(f"checkpoint {path}: not a native checkpoint (no format tag {NATIVE_FORMAT_TAG!r})")
    try:
        spec = ModelSpec(**content["spec"])
        model = spec.build()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: its model spec does not build: {error}") from None
    state = _matched(_tensors(content.get("state_dict"), path, "state_dict"), model, str(path))
    return NativeCheckpoint(spec=spec, state_dict=state)


def _read(path: str | os.PathLike[str]) -> Any:
    """The unpickled content of `path` (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused:
            raise CheckpointError(
                f"checkpoint {path}: refused: it pickles {refused.group(1)}, not only tensors and plain "
                "containers, and unpickling such objects can run code"
            ) from None
        reason = _UNPICKLER_REASON.search(str(error))
        raise CheckpointError(
            f"checkpoint {path}: cannot be read: not a torch checkpoint, or a corrupt one"
            + (f" ({reason.group(1)})" if reason else "")
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: cannot be read: {error}") from None


def _tensors(content: Any, path: str | os.PathLike[str], where: str) -> dict[str, torch.Tensor]:
    """`content` as a dict of tensors, or an error naming the first entry that is not one."""
    if not isinstance(content, dict):
        raise CheckpointError(f"checkpoint {path}: {where} is a {type(content).__name__}, not a dict of tensors")
    for key, value in content.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: {where}[{key!r}] is a {type(value).__name__}, not a tensor")
    return dict(content)


def _bare(content: Any, path: str | os.PathLike[str], format: str) -> dict[str, torch.Tensor]:
    return _tensors(content, path, f"the {format} state dict")


def _native(content: Any, path: str | os.PathLike[str], format: str) -> dict[str, torch.Tensor]:
    if isinstance(content, dict) and content.get("format") == NATIVE_FORMAT_TAG:
        return _tensors(content.get("state_dict"), path, "state_dict")
    return _bare(content, path, format)


def _wespeaker(content: Any, path: str | os.PathLike[str], format: str) -> dict[str, torch.Tensor]:
    if isinstance(content, dict) and "state_dict" in content:
        content = content["state_dict"]
    if isinstance(content, dict):
        content = {key: value for key, value in content.items() if not str(key).startswith(WESPEAKER_HEAD_PREFIX)}
    return _bare(content, path, format)


def _resemblyzer(content: Any, path: str | os.PathLike[str], format: str) -> dict[str, torch.Tensor]:
    if not isinstance(content, dict) or "model_state" not in content:
        raise CheckpointError(f"checkpoint {path}: no 'model_state' entry, as a {format} checkpoint has")
    state = _tensors(content["model_state"], path, "model_state")
    return {key: value for key, value in state.items() if key not in RESEMBLYZER_LOSS_KEYS}


_EXTRACTORS: dict[str, Callable[[Any, str | os.PathLike[str], str], dict[str, torch.Tensor]]] = {
    "native": _native,
    "wespeaker": _wespeaker,
    "speechbrain": _bare,
    "resemblyzer": _resemblyzer,
}
"""Format -> how to take the model's tensors out of the loaded content."""


def _matched(state: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """`state` when its names and shapes are exactly the model's (step counters may be missing).

    Names the model lacks are read as `nn.LSTM` names first: an upstream LSTM's `weight_ih_l0`
    is a `QuantizableLSTM`'s `l0.ih.weight`.
    """
    expected = model.state_dict()
    foreign = torch_lstm_keys_renamed({key: value for key, value in state.items() if key not in expected})
    state = {**{key: value for key, value in state.items() if key in expected}, **foreign}
    missing = [key for key in expected if key not in state and not key.endswith(OPTIONAL_KEY_SUFFIX)]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} {tuple(state[key].shape)} (model {tuple(expected[key].shape)})"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(keys)} {kind}: {', '.join(keys[:LISTED_KEYS])}{', ...' if len(keys) > LISTED_KEYS else ''}"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("of other shapes", reshaped))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit the {type(model).__name__} model: " + "; ".join(problems)
        )
    return {key: state.get(key, expected[key]) for key in expected}


__all__ = [
    "CHECKPOINT_FORMATS",
    "PACKAGE_PREFIX",
    "resolve_checkpoint_path",
    "CheckpointError",
    "NativeCheckpoint",
    "load_checkpoint",
    "read_native_checkpoint",
    "save_native_checkpoint",
    "sniff_format",
]
