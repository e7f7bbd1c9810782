"""The joint fit recovers kernel costs from whole-case times, and keeps an outlier from dragging it."""

from __future__ import annotations

import pytest

from hwcost import get_runtime
from hwcost.calibration.fit import Observation, fit_latency
from hwcost.kernels import DEFAULT_SPILL, SpillRamp, priced_features
from spaces.description import LayerDescription, ModelDescription

RUNTIME = get_runtime("onnxruntime-fp32")
TRUE_COSTS = {  # nanoseconds per unit
    "conv1d/fp32": {"calls": 2000.0, "macs": 0.02},
    "activation.prelu/fp32": {"calls": 500.0, "inputs": 4.0},
    "inference/fp32": {"calls": 5000.0},
    "lstm_recurrent/fp32": {"steps": 300.0, "macs": 0.03, "spilled_steps": 0.02},
}
CACHE_BYTES = 2 * 1024 * 1024


def _case(channels: int, frames: int, depth: int) -> ModelDescription:
    """`depth` convolutions, a PReLU after every other one (so that the two kinds' per-element
    costs are not the same column of the fit)."""
    layers = []
    for index in range(depth):
        elements = channels * frames
        layers.append(LayerDescription(
            f"conv{index}", "conv1d", params=channels * channels * 3, macs_per_second=channels * channels * 3 * frames,
            input_elements_per_second=elements, output_elements_per_second=elements,
        ))  # fmt: skip
        if index % 2:
            continue
        layers.append(LayerDescription(
            f"prelu{index}", "activation", input_elements_per_second=elements, output_elements_per_second=elements,
            operation="prelu",
        ))  # fmt: skip
    return ModelDescription("toy", tuple(layers))


def _true_ms(description: ModelDescription, step_spill: SpillRamp = DEFAULT_SPILL) -> float:
    lowering = RUNTIME.lower(description)
    kernels = [kernel for lowered in lowering.layers for kernel in lowered.kernels] + list(lowering.fixed)
    total = 0.0
    for kernel in kernels:
        features = priced_features(kernel, lowering.weight_bytes, CACHE_BYTES, step_spill)
        total += sum(TRUE_COSTS[kernel.key].get(name, 0.0) * value for name, value in features.items())
    return total / 1e6


def _observations(outlier: str = "") -> list[Observation]:
    observations = []
    for channels in (16, 64, 256):
        for frames in (100, 500):
            for depth in (1, 2, 3):
                name = f"c{channels}-t{frames}-d{depth}"
                description = _case(channels, frames, depth)
                slowdown = 3.0 if name == outlier else 1.0
                observations.append(Observation(name, RUNTIME.lower(description), _true_ms(description) * slowdown, 0.0))
    return observations


def test_the_joint_fit_recovers_each_kernels_cost_from_whole_case_times():
    fit = fit_latency(_observations(), CACHE_BYTES)
    assert max(abs(error) for error in fit.report.errors.values()) < 1e-6
    assert fit.coefficients["activation.prelu/fp32"]["inputs"] == pytest.approx(4.0, rel=1e-3)
    assert fit.coefficients["conv1d/fp32"]["macs"] == pytest.approx(0.02, rel=1e-3)
    assert fit.step_spill == DEFAULT_SPILL  # no recurrent steps to choose a ramp by


def test_a_case_timed_during_a_burst_of_load_does_not_drag_the_fit():
    report = fit_latency(_observations(outlier="c64-t500-d3"), CACHE_BYTES).report
    others = [abs(error) for name, error in report.errors.items() if name != "c64-t500-d3"]
    assert max(others) < 0.02  # the others are still fitted closely
    assert report.errors["c64-t500-d3"] < -0.6  # the outlier is left far above the fit


def _recurrent(hidden: int, steps: int) -> ModelDescription:
    matrix = 4 * hidden * hidden
    return ModelDescription("lstm", (LayerDescription(
        "lstm.l0.hh", "lstm_recurrent", params=matrix, macs_per_second=matrix * steps, input_elements_per_second=hidden * steps,
        output_elements_per_second=4 * hidden * steps, sequential_steps_per_second=steps,
    ),))  # fmt: skip


def test_the_fit_chooses_the_spill_ramp_the_recurrent_steps_follow():
    """LSTMs whose gate matrices run from a twentieth of L2 to three times it, timed on a CPU that
    keeps them cached up to 0.8 times L2 and loses all of them from 1.5 times: the fit finds that
    ramp among its candidates, not the modelled one, and then reproduces every case."""
    true_ramp = SpillRamp(0.8, 1.5)
    observations = _observations()
    for hidden in (64, 128, 256, 320, 384, 448, 512, 640):
        for steps in (100, 160):
            description = _recurrent(hidden, steps)
            observations.append(Observation(f"lstm-h{hidden}-t{steps}", RUNTIME.lower(description), _true_ms(description, true_ramp), 0.0))
    fit = fit_latency(observations, CACHE_BYTES)
    assert fit.step_spill == true_ramp
    assert max(abs(error) for error in fit.report.errors.values()) < 1e-6
    assert fit.coefficients["lstm_recurrent/fp32"]["spilled_steps"] == pytest.approx(0.02, rel=1e-3)
