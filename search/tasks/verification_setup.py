"""A verification run config's sections as the evaluator reads them: model spec, filterbank, setup.

`search verify` also uses `fbank_config` to check that a bundle's front end matches the run's.
"""

from __future__ import annotations

from evaluators.features import KALDI, FbankConfig
from evaluators.frontends import get_frontend
from evaluators.verification import VerificationSetup
from search.run_config import RunConfig
from spaces.compress import ModelSpec


def model_spec(config: RunConfig) -> ModelSpec:
    """The model the run compresses, with the input format of its features."""
    kwargs = {key: value for key, value in config.model.items() if key != "family"}
    kwargs["num_mel_bins"] = config.features.num_mel_bins
    return ModelSpec(
        family=config.model["family"],
        kwargs=kwargs,
        num_mel_bins=config.features.num_mel_bins,
        frames_per_second=round(1000.0 / config.features.frame_shift_ms),
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


def check_frontend(config: RunConfig) -> None:
    """A pretrained front-end's bands and rate are fixed; a windowed one cannot be trained on yet.

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
    if frontend.windowed and config.fidelity.trains:
        raise ValueError(
            f"fidelity.steps={list(config.fidelity.steps)}: fine-tuning on the {name} front-end's windows is not "
            "supported yet; use [0] (post-training quantization)"
        )


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


__all__ = ["check_frontend", "fbank_config", "model_spec", "verification_setup"]
