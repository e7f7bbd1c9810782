"""Speaker verification: compress a speaker-embedding model, scored by EER and minDCF."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnxruntime
import torch

from evaluators.evaluation import Evaluation
from evaluators.training import TeacherConfig
from evaluators.verification import VerificationEvaluator, VerificationSetup
from evaluators.verification_fidelity import VerificationFidelity
from search.checks import Check
from search.model_card import TaskCard
from search.pareto import Objective
from search.run_config import RunConfig
from search.tasks.base import Progress, Signature, Task
from search.tasks.verification_bundle import (
    VERIFICATION_CARD,
    eer_interval,
    verification_checks,
    verification_io,
    verification_record,
    verification_summary,
)
from search.tasks.verification_setup import model_spec, verification_setup
from spaces.bundle import Bundle
from spaces.compress import ModelSpec


class VerificationTask(Task):
    """Speaker verification: embeddings compared by cosine, EER and minDCF per evaluation set."""

    name = "verification"
    quality_metrics = ("eer", "min_dcf")
    per_eval_set_metrics = ("eer", "min_dcf")
    default_objectives = (Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min"))
    families = ("ecapa_tdnn", "resnet", "xvector")
    family_requirement = "a speaker-embedding family (ecapa_tdnn, resnet or xvector)"
    default_family = "resnet"
    teacher_config = TeacherConfig
    fidelity_config = VerificationFidelity
    embeds = True

    def model_spec(self, config: RunConfig) -> ModelSpec:
        return model_spec(config)

    def setup(self, config: RunConfig) -> VerificationSetup:
        return verification_setup(config)

    def evaluator(self) -> VerificationEvaluator:
        return VerificationEvaluator()

    def bundle_signature(self, config: RunConfig, spec: ModelSpec, model: torch.nn.Module) -> Signature:
        return verification_io(config, spec, model)

    def quality_interval(self, evaluation: Evaluation, prepared: Any) -> dict[str, float]:
        return eer_interval(evaluation, prepared)

    def evaluation_record(self, config: RunConfig, prepared: Any) -> dict[str, Any]:
        return verification_record(config, prepared)

    def summary(self, metrics: Mapping[str, float]) -> str:
        return verification_summary(metrics)

    def agreement_checks(
        self, bundle: Bundle, session: onnxruntime.InferenceSession, config: RunConfig, progress: Progress | None
    ) -> list[Check]:
        return verification_checks(bundle, session, config, progress)

    @property
    def card(self) -> TaskCard:
        return VERIFICATION_CARD


__all__ = ["VerificationTask"]
