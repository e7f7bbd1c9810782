"""TinyWASE's soft-step quantizer (Huang et al. 2022): a staircase made of sigmoids.

The hard nearest-centroid staircase of a sorted codebook `c_0 < ... < c_{L-1}` is
`c_0 + sum_k (c_{k+1} - c_k) * [w > t_k]` with thresholds `t_k = (c_k + c_{k+1}) / 2`. Replacing
each step by `sigmoid((w - t_k) / T)` makes it differentiable in the weights and the centroids;
as the temperature `T` goes to 0 it becomes the hard staircase, so annealing `T` moves training
smoothly from (nearly) float weights to the quantized ones.
"""

from __future__ import annotations

import torch

_SMALLEST_TEMPERATURE = 1e-12


def soft_step(values: torch.Tensor, codebooks: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft staircase of each row of `values` over its row's codebook.

    Args:
        values: `[rows, n]` weights.
        codebooks: `[rows, levels]` centroids (any order; sorted here, differentiably).
        temperature: Relative to each codebook's mean level spacing; 0 gives the hard staircase.
    """
    ordered = codebooks.sort(dim=1).values
    gaps = ordered[:, 1:] - ordered[:, :-1]
    thresholds = (ordered[:, 1:] + ordered[:, :-1]) / 2
    spacing = (ordered[:, -1:] - ordered[:, :1]) / max(1, ordered.shape[1] - 1)
    width = (temperature * spacing).clamp_min(_SMALLEST_TEMPERATURE)
    steps = torch.sigmoid((values[:, :, None] - thresholds[:, None, :]) / width[:, :, None])
    return ordered[:, :1] + (steps * gaps[:, None, :]).sum(dim=2)


def annealed_temperature(start: float, end: float, progress: float) -> float:
    """Geometric interpolation from `start` (progress 0) to `end` (progress >= 1)."""
    fraction = min(max(progress, 0.0), 1.0)
    return start * (end / start) ** fraction
