"""Signal-to-distortion ratios for speaker extraction: SI-SDR, SDR, their improvements, the loss.

SI-SDR (Le Roux et al. 2019) zero-means both signals and projects the estimate on the reference,
so a rescaled estimate scores the same; it is the training loss and the headline metric. SDR here
is the plain (scale-dependent) signal-to-distortion ratio `10 log10(|s|^2 / |s - s_hat|^2)`,
not BSS-eval's filtered SDR: no distortion filter is allowed, so SDRi <= what BSS-eval reports.
Improvements ("i") are measured against the unprocessed mixture, as in the extraction literature.
"""

from __future__ import annotations

import torch

EPSILON = 1e-8
"""Keeps silent references and perfect estimates finite (about +-80 dB for unit-power signals)."""


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis: `[..., samples]` -> `[...]`."""
    _check_shapes(estimate, reference)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    reference = reference - reference.mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(dim=-1, keepdim=True) / (reference.square().sum(dim=-1, keepdim=True) + EPSILON)
    target = scale * reference
    return _ratio_db(target, estimate - target)


def sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Plain SDR in dB over the last axis (scale matters): `[..., samples]` -> `[...]`."""
    _check_shapes(estimate, reference)
    return _ratio_db(reference, estimate - reference)


def si_sdr_improvement(estimate: torch.Tensor, mixture: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SI-SDR of the estimate minus SI-SDR of the mixture itself, in dB."""
    return si_sdr(estimate, reference) - si_sdr(mixture, reference)


def sdr_improvement(estimate: torch.Tensor, mixture: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SDR of the estimate minus SDR of the mixture itself, in dB."""
    return sdr(estimate, reference) - sdr(mixture, reference)


def negative_si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Training loss: minus the batch mean SI-SDR (a scalar)."""
    return -si_sdr(estimate, reference).mean()


def _ratio_db(signal: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10((signal.square().sum(dim=-1) + EPSILON) / (distortion.square().sum(dim=-1) + EPSILON))


def _check_shapes(estimate: torch.Tensor, reference: torch.Tensor) -> None:
    if estimate.shape != reference.shape:
        shapes = f"estimate shape {tuple(estimate.shape)} differs from reference shape {tuple(reference.shape)}"
        raise ValueError(shapes)
