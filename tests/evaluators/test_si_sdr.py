import math

import pytest
import torch

from evaluators.si_sdr import negative_si_sdr, sdr, sdr_improvement, si_sdr, si_sdr_improvement


def _signal(samples: int = 800, seed: int = 0) -> torch.Tensor:
    return torch.randn(samples, generator=torch.Generator().manual_seed(seed))


def test_si_sdr_matches_a_hand_computed_value():
    reference = torch.tensor([1.0, -1.0, 1.0, -1.0])
    noise = torch.tensor([0.5, 0.5, -0.5, -0.5])  # zero-mean and orthogonal to the reference
    # The projection of reference + noise on the reference is the reference itself, so the
    # ratio is |reference|^2 / |noise|^2 = 4 / 1.
    assert si_sdr(reference + noise, reference).item() == pytest.approx(10 * math.log10(4.0), abs=1e-4)


def test_sdr_matches_a_hand_computed_value():
    reference = torch.tensor([2.0, 0.0, -2.0, 0.0])
    estimate = reference + torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert sdr(estimate, reference).item() == pytest.approx(10 * math.log10(8.0 / 1.0), abs=1e-4)


def test_si_sdr_is_scale_invariant_but_sdr_is_not():
    reference = _signal()
    estimate = reference + 0.3 * _signal(seed=1)
    assert si_sdr(3.0 * estimate, reference).item() == pytest.approx(si_sdr(estimate, reference).item(), abs=1e-4)
    assert sdr(3.0 * estimate, reference).item() < sdr(estimate, reference).item() - 3.0


def test_a_perfect_estimate_scores_high_and_noise_scores_low():
    reference = _signal()
    assert si_sdr(reference, reference).item() > 60.0
    assert si_sdr(_signal(seed=5), reference).item() < -10.0


def test_improvement_is_relative_to_the_mixture():
    reference, interferer = _signal(), _signal(seed=1)
    mixture = reference + interferer
    assert si_sdr_improvement(mixture, mixture, reference).item() == pytest.approx(0.0, abs=1e-5)
    assert sdr_improvement(reference, mixture, reference).item() > 50.0
    assert si_sdr_improvement(reference + 0.1 * interferer, mixture, reference).item() == pytest.approx(20.0, abs=0.5)


def test_metrics_batch_over_leading_axes_and_the_loss_is_minus_the_mean():
    references = torch.stack([_signal(seed=seed) for seed in range(3)])
    estimates = references + torch.stack([0.1 * _signal(seed=seed + 10) * (seed + 1) for seed in range(3)])
    values = si_sdr(estimates, references)
    assert values.shape == (3,)
    assert values[0] > values[1] > values[2]
    assert negative_si_sdr(estimates, references).item() == pytest.approx(-values.mean().item())


def test_the_loss_has_gradients_toward_the_reference():
    reference = _signal()
    estimate = (reference + _signal(seed=2)).requires_grad_(True)
    negative_si_sdr(estimate, reference).backward()
    improved = estimate.detach() - 0.01 * estimate.grad / estimate.grad.abs().max()
    assert si_sdr(improved, reference) > si_sdr(estimate.detach(), reference)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"estimate shape \(5,\) differs from reference shape \(4,\)"):
        si_sdr(torch.zeros(5), torch.zeros(4))
