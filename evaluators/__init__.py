"""How good a candidate is: data, features, training loops, metrics and task evaluators."""

from evaluators.metrics import VerificationMetrics, equal_error_rate, minimum_dcf, verification_metrics
from evaluators.verification import Evaluation, PreparedVerification, VerificationEvaluator

__all__ = [
    "Evaluation",
    "PreparedVerification",
    "VerificationEvaluator",
    "VerificationMetrics",
    "equal_error_rate",
    "minimum_dcf",
    "verification_metrics",
]
