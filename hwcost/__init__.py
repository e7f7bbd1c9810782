"""What a candidate costs on a target: target profiles, runtimes, kernels and the cost model.

A target is a CPU profile plus the runtime it prices (`hwcost.runtimes`). Works on
`spaces.description.ModelDescription` alone and never imports torch, so a report or a remote
worker can price a model from its JSON description; `hwcost.calibration` (which needs torch and
onnxruntime) measures kernels and validates the model on the machine it runs on.
"""

from hwcost.estimator import (
    ELEMENTWISE_CLASS,
    CostEstimate,
    CostModel,
    CostModelError,
    LayerCost,
    estimate,
    kernel_class,
)
from hwcost.memory import MemoryCoefficients, PeakMemory
from hwcost.profile import (
    KERNEL_CLASSES,
    ProfileError,
    TargetProfile,
    available_targets,
    load_target,
    profile_from_dict,
    target_error,
)
from hwcost.runtimes import RUNTIMES, Runtime, get_runtime, register_runtime

__all__ = [
    "ELEMENTWISE_CLASS",
    "KERNEL_CLASSES",
    "RUNTIMES",
    "CostEstimate",
    "CostModel",
    "CostModelError",
    "LayerCost",
    "MemoryCoefficients",
    "PeakMemory",
    "ProfileError",
    "Runtime",
    "TargetProfile",
    "available_targets",
    "estimate",
    "get_runtime",
    "kernel_class",
    "load_target",
    "profile_from_dict",
    "register_runtime",
    "target_error",
]
