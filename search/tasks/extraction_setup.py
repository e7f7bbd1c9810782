"""An extraction run config's sections as the evaluator reads them: model spec and setup."""

from __future__ import annotations

from evaluators.extraction import ExtractionSetup
from search.run_config import RunConfig
from spaces.compress import ModelSpec


def extraction_spec(config: RunConfig) -> ModelSpec:
    """The extractor the run compresses; it reads raw audio at the data's sample rate."""
    kwargs = {key: value for key, value in config.model.items() if key != "family"}
    return ModelSpec(
        config.model["family"],
        kwargs,
        num_mel_bins=0,
        frames_per_second=0,
        sample_rate=config.data.sample_rate,
        side_bits=config.space.side_bits,
    )


def extraction_setup(config: RunConfig) -> ExtractionSetup:
    """The sections `ExtractionEvaluator.prepare` reads; the first evaluation set holds the test speakers."""
    return ExtractionSetup(
        spec=extraction_spec(config),
        train_source=config.data.train,
        test_source=config.data.eval[0].source,
        mixtures=config.mixtures,
        teacher=config.teacher,
        space=config.space,
        fidelity=config.fidelity,
        seed=config.seed,
        cache_dir=config.cache_dir,
    )


__all__ = ["extraction_setup", "extraction_spec"]
