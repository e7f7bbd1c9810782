"""Speaker extraction: compress a target-speaker extractor, scored by SI-SDRi and SDRi (dB)."""

from __future__ import annotations

from evaluators.data.mixtures import MixtureConfig
from evaluators.extraction import ExtractionEvaluator
from evaluators.extraction_training import ExtractorTrainingConfig
from evaluators.fidelity import FidelityConfig
from search.pareto import Objective
from search.tasks.base import Task
from search.tasks.extraction_bundle import (
    EXTRACTION_CARD,
    extraction_checks,
    extraction_io,
    extraction_record,
    extraction_summary,
    si_sdri_interval,
)
from search.tasks.extraction_setup import extraction_setup, extraction_spec


class ExtractionTask(Task):
    """Target-speaker extraction from two-speaker mixtures, given an enrollment utterance."""

    name = "extraction"
    quality_metrics = ("si_sdri", "sdri")
    default_objectives = (Objective("si_sdri", "max"), Objective("size_bytes", "min"), Objective("latency_ms", "min"))
    families = ("extractor",)
    family_requirement = "family 'extractor'"
    default_family = "extractor"
    default_sample_rate = 8000
    """The rate of WSJ0-2mix, the usual extraction benchmark."""
    teacher_config = ExtractorTrainingConfig
    fidelity_config = FidelityConfig
    sections = {"mixtures": MixtureConfig}

    model_spec = staticmethod(extraction_spec)
    setup = staticmethod(extraction_setup)
    evaluator = ExtractionEvaluator
    bundle_signature = staticmethod(extraction_io)
    quality_interval = staticmethod(si_sdri_interval)
    evaluation_record = staticmethod(extraction_record)
    summary = staticmethod(extraction_summary)
    agreement_checks = staticmethod(extraction_checks)

    card = EXTRACTION_CARD


__all__ = ["ExtractionTask"]
