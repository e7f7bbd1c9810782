"""Gradient tricks that make rounding trainable: the straight-through estimator and gradient scaling.

Rounding has a zero gradient almost everywhere, so quantization-aware training replaces its
backward pass by the identity (Bengio et al. 2013); learned step sizes additionally need their
gradient scaled down (Esser et al. 2020, LSQ). Activation and weight fake-quantizers share these.
"""

from __future__ import annotations

import torch


def round_straight_through(values: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass."""
    return values + (torch.round(values) - values).detach()


def replace_straight_through(values: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """`replacement` in the forward pass; the gradient reaches `values` as if it were the identity.

    Gradients that `replacement` itself carries (e.g. to a codebook) are kept as well.
    """
    return replacement + (values - values.detach())


def scale_gradient(values: torch.Tensor, factor: float) -> torch.Tensor:
    """`values` in the forward pass, gradient multiplied by `factor` in the backward pass."""
    return values * factor + (values - values * factor).detach()
