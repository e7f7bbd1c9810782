import pytest
import torch

from spaces.quant import ActivationQuantizer, QuantizationError


def _batches(count: int = 3, signed: bool = True) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 16, 10, generator=generator) * (index + 1) for index in range(count)]
    return batches if signed else [torch.relu(batch) for batch in batches]


def _calibrated(bits: int = 8, signed: bool = True) -> ActivationQuantizer:
    quantizer = ActivationQuantizer(bits)
    for batch in _batches(signed=signed):
        quantizer(batch)
    return quantizer.freeze()


def test_calibration_records_the_range_and_passes_inputs_through():
    quantizer = ActivationQuantizer()
    assert quantizer.mode == "calibrate"
    batches = _batches()
    for batch in batches:
        assert torch.equal(quantizer(batch), batch)
    everything = torch.cat([batch.reshape(-1) for batch in batches])
    assert quantizer.observed_min.item() == everything.min().item()
    assert quantizer.observed_max.item() == everything.max().item()


def test_freeze_sets_signed_step_from_the_largest_magnitude():
    quantizer = _calibrated(bits=8)
    assert quantizer.mode == "quantize" and bool(quantizer.signed)
    assert quantizer.levels == (-128, 127)
    largest = max(-quantizer.observed_min.item(), quantizer.observed_max.item())
    assert quantizer.step.item() == pytest.approx(largest / 127)


def test_relu_outputs_get_the_unsigned_range():
    quantizer = _calibrated(bits=4, signed=False)
    assert not bool(quantizer.signed)
    assert quantizer.levels == (0, 15)
    assert quantizer.step.item() == pytest.approx(quantizer.observed_max.item() / 15)
    assert quantizer(_batches(signed=False)[0]).min() >= 0


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_frozen_output_has_at_most_two_to_the_bits_levels(bits, signed):
    quantizer = _calibrated(bits, signed)
    outputs = quantizer(torch.randn(64, 256, generator=torch.Generator().manual_seed(bits)) * 10)
    assert outputs.unique().numel() <= 2**bits


def test_straight_through_gradient_reaches_input_and_step():
    quantizer = _calibrated(bits=4)
    inputs = (torch.randn(8, 32, generator=torch.Generator().manual_seed(1)) * 4).requires_grad_()
    target = torch.randn(8, 32, generator=torch.Generator().manual_seed(2))
    (quantizer(inputs) - target).pow(2).sum().backward()
    assert quantizer.step.grad is not None and quantizer.step.grad.abs().item() > 0
    low, high = quantizer.levels
    inside = ((inputs / quantizer.step) >= low) & ((inputs / quantizer.step) <= high)
    assert inside.any() and not inside.all()
    assert (inputs.grad[inside] != 0).any() and (inputs.grad[~inside] == 0).all()


def test_step_is_a_learnable_parameter():
    quantizer = _calibrated(bits=4)
    assert dict(quantizer.named_parameters()) == {"step": quantizer.step}
    assert quantizer.step.requires_grad


def test_mode_survives_a_state_dict_round_trip():
    restored = ActivationQuantizer(bits=8)
    restored.load_state_dict(_calibrated(bits=8, signed=False).state_dict())
    assert restored.mode == "quantize" and not bool(restored.signed)


def test_calibrate_resets_the_observed_range():
    quantizer = _calibrated().calibrate()
    assert quantizer.mode == "calibrate"
    quantizer(torch.ones(3))
    assert quantizer.observed_min.item() == 1.0 and quantizer.observed_max.item() == 1.0


def test_freeze_without_calibration_is_an_error():
    with pytest.raises(QuantizationError, match="before any calibration batch"):
        ActivationQuantizer().freeze()


@pytest.mark.parametrize("bits", [0, 1, 9, 32])
def test_impossible_bits_rejected(bits):
    with pytest.raises(QuantizationError, match=f"'activation': bits={bits}"):
        ActivationQuantizer(bits)
