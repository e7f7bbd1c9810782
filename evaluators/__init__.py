"""How good a candidate is: data, features, training loops, metrics and task evaluators."""

from evaluators.finetune import FidelityConfig, FineTuneData, FineTuner
from evaluators.metrics import VerificationMetrics, equal_error_rate, minimum_dcf, verification_metrics
from evaluators.msft import msft_stages
from evaluators.sensitivity import layer_sensitivities
from evaluators.verification import Evaluation, PreparedVerification, VerificationEvaluator

__all__ = [
    "Evaluation",
    "FidelityConfig",
    "FineTuneData",
    "FineTuner",
    "PreparedVerification",
    "VerificationEvaluator",
    "VerificationMetrics",
    "equal_error_rate",
    "layer_sensitivities",
    "minimum_dcf",
    "msft_stages",
    "verification_metrics",
]
