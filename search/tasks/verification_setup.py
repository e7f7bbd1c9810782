"""A verification run config's sections as the evaluator reads them: model spec, filterbank, setup.

`search verify` also uses `fbank_config` to check that a bundle's front end matches the run's.
"""

from __future__ import annotations

from typing import Any

import torch

from evaluators.features import KALDI, FbankConfig
from evaluators.frontends import get_frontend
from evaluators.training import TeacherConfig
from evaluators.verification import VerificationSetup
from search.run_config import RunConfig
from spaces.compress import ModelSpec


def model_spec(config: RunConfig) -> ModelSpec:
    """The model the run compresses, with the input format of its features.

    Its `frames_per_second` is what the model reads per second of audio: the frame rate, or a
    windowed front-end's overlapping windows' (so the cost model prices the frames really run).
    """
    kwargs = {key: value for key, value in config.model.items() if key != "family"}
    kwargs["num_mel_bins"] = config.features.num_mel_bins
    frontend = config.features.frontend
    frames_per_second = (
        get_frontend(frontend).frames_per_second if frontend != KALDI else 1000.0 / config.features.frame_shift_ms
    )
    return ModelSpec(
        family=config.model["family"],
        kwargs=kwargs,
        num_mel_bins=config.features.num_mel_bins,
        frames_per_second=round(frames_per_second),
        sample_rate=config.data.sample_rate,
        side_bits=config.space.side_bits,
    )


def fbank_config(config: RunConfig) -> FbankConfig:
    """The filterbank every feature set of the run is computed with."""
    return FbankConfig(
        num_mel_bins=config.features.num_mel_bins,
        frame_length_ms=config.features.frame_length_ms,
        frame_shift_ms=config.features.frame_shift_ms,
        sample_rate=config.data.sample_rate,
        frontend=config.features.frontend,
    )


PRETRAINED_FIDELITY = {"classification_weight": 0.0, "distillation_weight": 1.0, "learning_rate": 3e-4}
"""Fine-tuning defaults when the teacher is a loaded checkpoint: its own embeddings are the only
target (its training data and speaker labels are not at hand, and any speech serves), with
steps a third of those that repair a teacher the engine trained (docs/pretrained.md has the
measurements behind them)."""


def pretrained_fidelity_defaults(teacher: TeacherConfig) -> dict[str, Any]:
    """`PRETRAINED_FIDELITY` for a loaded teacher, nothing for one the engine trains."""
    return dict(PRETRAINED_FIDELITY) if teacher.checkpoint is not None else {}


def check_frontend(config: RunConfig) -> None:
    """A pretrained front-end's bands and rate are fixed; a windowed one trains no teacher and crops within a window.

    Raises:
        ValueError: Naming the key to change.
    """
    if config.features.frontend == KALDI:
        return
    frontend = get_frontend(config.features.frontend)
    name = frontend.name
    if config.features.num_mel_bins != frontend.num_mel_bins:
        raise ValueError(
            f"features.num_mel_bins={config.features.num_mel_bins}: the {name} front-end computes "
            f"{frontend.num_mel_bins} bands; set num_mel_bins: {frontend.num_mel_bins}"
        )
    if config.data.sample_rate != frontend.sample_rate:
        raise ValueError(f"data.sample_rate={config.data.sample_rate}: the {name} front-end reads {frontend.sample_rate} Hz audio")
    if frontend.windowed and config.teacher.checkpoint is None:
        raise ValueError(f"teacher.checkpoint: the {name} front-end's windows cannot train a teacher; load one")
    crop_frames = config.fidelity.crop_frames
    if frontend.windowed and crop_frames > frontend.windows.frames:
        raise ValueError(
            f"fidelity.crop_frames={crop_frames}: the {name} front-end's windows have {frontend.windows.frames} "
            f"frames; crops are taken inside one window"
        )


def check_distillation_taps(config: RunConfig) -> None:
    """`fidelity.distillation_taps` name outputs the model has (one forward pass on example input).

    Raises:
        ValueError: Naming the unknown tap and the model's taps.
    """
    taps = config.fidelity.distillation_taps
    if not taps:
        return
    spec = model_spec(config)
    model = spec.build().eval()
    with torch.no_grad():
        available = list(model.forward_with_taps(*spec.example_inputs(model))[1])
    unknown = [tap for tap in taps if tap not in available]
    if unknown:
        raise ValueError(
            f"fidelity.distillation_taps: {config.model['family']} has no tap {unknown[0]!r}; its taps: {available}"
        )


def check_verification(config: RunConfig) -> None:
    """Everything about a verification config that needs its model or front-end to check."""
    check_frontend(config)
    check_distillation_taps(config)


def verification_setup(config: RunConfig) -> VerificationSetup:
    """The sections `VerificationEvaluator.prepare` reads."""
    return VerificationSetup(
        spec=model_spec(config),
        data=config.data,
        fbank=fbank_config(config),
        teacher=config.teacher,
        space=config.space,
        fidelity=config.fidelity,
        distillation=config.distillation,
        max_trials=config.evaluation.max_trials,
        seed=config.seed,
        cache_dir=config.cache_dir,
    )


__all__ = [
    "PRETRAINED_FIDELITY",
    "check_distillation_taps",
    "check_frontend",
    "check_verification",
    "fbank_config",
    "model_spec",
    "pretrained_fidelity_defaults",
    "verification_setup",
]
