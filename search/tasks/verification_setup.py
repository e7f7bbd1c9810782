"""A verification run config's sections as the evaluator reads them: model spec, filterbank, setup.

`search verify` also uses `fbank_config` to check that a bundle's front end matches the run's.
"""

from __future__ import annotations

from evaluators.features import FbankConfig
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


__all__ = ["fbank_config", "model_spec", "verification_setup"]
