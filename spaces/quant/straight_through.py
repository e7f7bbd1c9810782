"""Gradient tricks that make rounding trainable: the straight-through estimator and gradient scaling.

Rounding has a zero gradient almost everywhere, so quantization-aware training replaces its
backward pass by the identity (Bengio et al. 2013); learned step sizes additionally need their
gradient scaled down (Esser et al. 2020, LSQ). Activation and weight fake-quantizers share these.
They are autograd functions rather than `x + (f(x) - x).detach()` tricks so that the forward
values are exact: a rounded level must be an exact integer to become the same code as
post-training quantization gives.
"""

from __future__ import annotations

import torch


class _RoundStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        return torch.round(values)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return gradient


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return values.view_as(values)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return gradient * ctx.factor, None


def round_straight_through(values: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass."""
    return _RoundStraightThrough.apply(values)


def replace_straight_through(values: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """`replacement` in the forward pass; the gradient reaches `values` as if it were the identity.

    Gradients that `replacement` itself carries (e.g. to a codebook) are kept as well.
    """
    return replacement + (values - values.detach())


def scale_gradient(values: torch.Tensor, factor: float) -> torch.Tensor:
    """`values` in the forward pass, gradient multiplied by `factor` in the backward pass."""
    return _ScaleGradient.apply(values, factor)
