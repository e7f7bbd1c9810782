"""Speaker verification: compress a speaker-embedding model, scored by EER and minDCF."""

from __future__ import annotations

from pathlib import Path

from evaluators.sensitivity_data import VerificationSensitivityData
from evaluators.training import TeacherConfig
from evaluators.verification import VerificationEvaluator
from evaluators.verification_fidelity import VerificationFidelity
from search.pareto import Objective
from search.tasks.base import Task
from search.tasks.verification_bundle import (
    eer_interval,
    verification_checks,
    verification_io,
    verification_record,
    verification_summary,
)
from search.tasks.verification_card import VERIFICATION_CARD
from search.tasks.verification_setup import check_verification, model_spec, pretrained_fidelity_defaults, verification_setup
from search.tasks.verification_threshold import decision_thresholds
from spaces import bundle_runner
from spaces.bundle import RUNNER_FILE


class VerificationTask(Task):
    """Speaker verification: embeddings compared by cosine, EER and minDCF per evaluation set."""

    name = "verification"
    quality_metrics = ("eer", "min_dcf")
    per_eval_set_metrics = ("eer", "min_dcf")
    default_objectives = (Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min"))
    families = ("ecapa_tdnn", "ge2e", "resnet", "speechbrain_ecapa", "wespeaker_ecapa", "wespeaker_resnet", "xvector")
    family_requirement = f"a speaker-embedding family ({', '.join(families)})"
    default_family = "resnet"
    teacher_config = TeacherConfig
    fidelity_config = VerificationFidelity
    embeds = True
    bundle_files = {RUNNER_FILE: Path(bundle_runner.__file__)}

    model_spec = staticmethod(model_spec)
    validate = staticmethod(check_verification)
    fidelity_defaults = staticmethod(pretrained_fidelity_defaults)
    setup = staticmethod(verification_setup)
    evaluator = VerificationEvaluator
    sensitivity_data = staticmethod(lambda config: VerificationSensitivityData(verification_setup(config)))
    bundle_signature = staticmethod(verification_io)
    quality_interval = staticmethod(eer_interval)
    decision = staticmethod(decision_thresholds)
    evaluation_record = staticmethod(verification_record)
    summary = staticmethod(verification_summary)
    agreement_checks = staticmethod(verification_checks)

    card = VERIFICATION_CARD


__all__ = ["VerificationTask"]
