"""How good a candidate is: data, features, training loops, metrics and task evaluators."""

from evaluators.fidelity import FidelityConfig
from evaluators.finetune import FineTuneData, FineTuner
from evaluators.metrics import VerificationMetrics, equal_error_rate, minimum_dcf, verification_metrics
from evaluators.msft import msft_stages
from evaluators.sensitivity import layer_sensitivities
from evaluators.verification_fidelity import VerificationFidelity
from evaluators.evaluation import Evaluation, Evaluator
from evaluators.verification import PreparedVerification, VerificationEvaluator, VerificationSetup

__all__ = [
    "Evaluation",
    "Evaluator",
    "FidelityConfig",
    "FineTuneData",
    "FineTuner",
    "VerificationFidelity",
    "PreparedVerification",
    "VerificationEvaluator",
    "VerificationSetup",
    "VerificationMetrics",
    "equal_error_rate",
    "layer_sensitivities",
    "minimum_dcf",
    "msft_stages",
    "verification_metrics",
]
