"""What a candidate costs on a target CPU: target profiles and the per-layer roofline model.

Works on `spaces.description.ModelDescription` alone and never imports torch, so a report or a
remote worker can price a model from its JSON description.
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
from hwcost.profile import (
    KERNEL_CLASSES,
    ProfileError,
    TargetProfile,
    available_targets,
    load_target,
    profile_from_dict,
)

__all__ = [
    "ELEMENTWISE_CLASS",
    "KERNEL_CLASSES",
    "CostEstimate",
    "CostModel",
    "CostModelError",
    "LayerCost",
    "ProfileError",
    "TargetProfile",
    "available_targets",
    "estimate",
    "kernel_class",
    "load_target",
    "profile_from_dict",
]
