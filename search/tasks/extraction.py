"""Speaker extraction: compress a target-speaker extractor, scored by SI-SDRi and SDRi (dB)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnxruntime
import torch

from evaluators.data.mixtures import MixtureConfig
from evaluators.evaluation import Evaluation
from evaluators.extraction import ExtractionEvaluator, ExtractionSetup
from evaluators.extraction_training import ExtractorTrainingConfig
from evaluators.fidelity import FidelityConfig
from search.checks import Check
from search.model_card import TaskCard
from search.pareto import Objective
from search.run_config import RunConfig
from search.tasks.base import Progress, Signature, Task
from search.tasks.extraction_bundle import (
    EXTRACTION_CARD,
    extraction_checks,
    extraction_io,
    extraction_record,
    extraction_summary,
    si_sdri_interval,
)
from search.tasks.extraction_setup import extraction_setup, extraction_spec
from spaces.bundle import Bundle
from spaces.compress import ModelSpec


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

    def model_spec(self, config: RunConfig) -> ModelSpec:
        return extraction_spec(config)

    def setup(self, config: RunConfig) -> ExtractionSetup:
        return extraction_setup(config)

    def evaluator(self) -> ExtractionEvaluator:
        return ExtractionEvaluator()

    def bundle_signature(self, config: RunConfig, spec: ModelSpec, model: torch.nn.Module) -> Signature:
        return extraction_io(config, spec, model)

    def quality_interval(self, evaluation: Evaluation, prepared: Any) -> dict[str, float]:
        return si_sdri_interval(evaluation, prepared)

    def evaluation_record(self, config: RunConfig, prepared: Any) -> dict[str, Any]:
        return extraction_record(config, prepared)

    def summary(self, metrics: Mapping[str, float]) -> str:
        return extraction_summary(metrics)

    def agreement_checks(
        self, bundle: Bundle, session: onnxruntime.InferenceSession, config: RunConfig, progress: Progress | None
    ) -> list[Check]:
        return extraction_checks(bundle, session, config, progress)

    @property
    def card(self) -> TaskCard:
        return EXTRACTION_CARD


__all__ = ["ExtractionTask"]
