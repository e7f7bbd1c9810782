"""Kernel features, fitted pricing and the cache-dependent features."""

from __future__ import annotations

import dataclasses

import pytest

from hwcost import CostModel, ProfileError, profile_from_dict
from hwcost.estimator import FITTED
from hwcost.kernels import (
    DEFAULT_SPILL,
    Kernel,
    SpillRamp,
    check_coefficients,
    layer_features,
    priced_features,
)
from spaces.description import LayerDescription, ModelDescription
from hand_profile import HAND_CPU

BASE = {**HAND_CPU, "runtime": "onnxruntime-fp32"}

# A Conv1d of 16 -> 32 channels, kernel 3, over 100 frames: a GEMM of M=32, K=48, N=100.
CONV = LayerDescription(
    "conv", "conv1d", params=32 * 16 * 3, macs_per_second=32 * 100 * 48, input_elements_per_second=1600,
    output_elements_per_second=3200,
)  # fmt: skip


def test_convolution_features_recover_its_matrix_shapes():
    features = layer_features(CONV)
    assert features["calls"] == 1
    assert features["macs"] == 32 * 48 * 100
    assert features["unfolded"] == pytest.approx(48 * 100)  # N * K, the im2col buffer
    assert features["weights"] == 32 * 48 and features["outputs"] == 32 * 100


def test_a_linear_layer_unfolds_nothing_beyond_its_input():
    linear = LayerDescription(
        "fc", "linear", params=64 * 128, macs_per_second=64 * 128 * 10, input_elements_per_second=1280, output_elements_per_second=640
    )
    assert layer_features(linear)["unfolded"] == pytest.approx(1280)


def test_a_convolution_counts_its_output_positions():
    assert layer_features(CONV)["positions"] == pytest.approx(100)


def _conv2d(inputs: int, outputs: int, positions: int) -> LayerDescription:
    """A 3x3 convolution of `inputs` -> `outputs` channels over `positions` output pixels."""
    reduction = inputs * 9
    return LayerDescription(
        "conv2d", "conv2d", params=outputs * reduction, macs_per_second=outputs * reduction * positions,
        input_elements_per_second=inputs * positions, output_elements_per_second=outputs * positions,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("inputs", "outputs", "narrow"),
    [(8, 8, True), (1, 16, True), (6, 32, True), (8, 16, False), (16, 16, False), (24, 24, False), (32, 64, False)],
)
def test_convolutions_narrower_than_the_vector_kernel_count_their_positions_as_narrow(inputs, outputs, narrow):
    """Fewer than 16 output channels, or input channels that are no multiple of 4 (a ResNet stem's
    one channel): onnxruntime's int8 convolution falls back to im2col and a generic GEMM."""
    features = layer_features(_conv2d(inputs, outputs, 4000))
    assert features["positions"] == pytest.approx(4000)
    assert features["narrow_positions"] == pytest.approx(4000 if narrow else 0.0)


def test_a_narrow_linear_layer_has_no_narrow_positions():
    linear = LayerDescription("fc", "linear", params=64 * 8, macs_per_second=64 * 8, input_elements_per_second=64, output_elements_per_second=8)
    assert layer_features(linear)["narrow_positions"] == 0.0


def test_a_calibrated_key_is_priced_by_its_coefficients_and_others_by_the_roofline():
    kernels = {"conv1d/fp32": {"calls": 1000.0, "macs": 0.5}, "inference/fp32": {"calls": 3000.0}}
    profile = profile_from_dict({**BASE, "measured": {"kernels": kernels}})
    bn = LayerDescription("prelu", "activation", input_elements_per_second=3200, output_elements_per_second=3200, operation="prelu")
    estimate = CostModel().estimate(ModelDescription("toy", (CONV, bn)), profile)
    conv, prelu = estimate.layers
    assert conv.bound == FITTED
    assert conv.latency_ms == pytest.approx((1000.0 + 0.5 * CONV.macs_per_second) / 1e6)
    assert prelu.bound in ("compute", "memory")  # not calibrated: the roofline
    assert estimate.fixed_ms == pytest.approx(3000.0 / 1e6)
    assert estimate.latency_ms == pytest.approx(conv.latency_ms + prelu.latency_ms + estimate.fixed_ms)


@pytest.mark.parametrize(
    ("weights", "expected"), [(0, 0.0), (512 * 1024, 0.0), (1280 * 1024, 0.5), (2048 * 1024, 1.0), (8192 * 1024, 1.0)]
)
def test_weights_spill_from_half_the_cache_on_and_all_of_them_at_twice_its_size(weights, expected):
    assert DEFAULT_SPILL.fraction(weights, 1024 * 1024) == pytest.approx(expected)


@pytest.mark.parametrize(("start", "full"), [(1.0, 1.0), (1.5, 0.8), (-0.1, 1.0)])
def test_a_spill_ramp_must_rise(start, full):
    with pytest.raises(ValueError, match="start < full"):
        SpillRamp(start, full)


def test_weights_are_cold_only_when_the_whole_model_outgrows_the_cache():
    kernel = Kernel("conv1d", "fp32", layer_features(CONV), CONV)
    own_bytes = CONV.params * 4
    assert priced_features(kernel, touched_bytes=own_bytes, cache_bytes=1024 * 1024)["cold_weights"] == 0
    assert priced_features(kernel, touched_bytes=8 * 1024 * 1024, cache_bytes=1024 * 1024)["cold_weights"] == own_bytes


@pytest.mark.parametrize(
    ("inputs", "outputs", "input_factor", "output_factor"),
    [(24, 24, 32 / 24, 32 / 24), (12, 24, 1.0, 32 / 24), (16, 48, 1.0, 1.0), (40, 8, 48 / 40, 2.0)],
)
def test_a_blocked_convolution_is_priced_on_its_channels_padded_to_the_block(inputs, outputs, input_factor, output_factor):
    """Output channels pad up to a multiple of the block; input channels too from one block up
    (fewer are read in place)."""
    layer = dataclasses.replace(_conv2d(inputs, outputs, 100), input_channels=inputs)
    plain = layer_features(layer)
    blocked = priced_features(Kernel("conv2d", "fp32", plain, layer, blocked=True), 0, 1 << 20, channel_block=16)
    assert blocked["macs"] == pytest.approx(plain["macs"] * input_factor * output_factor)
    assert blocked["weights"] == pytest.approx(plain["weights"] * input_factor * output_factor)
    assert blocked["outputs"] == pytest.approx(plain["outputs"] * output_factor)
    assert blocked["inputs"] == pytest.approx(plain["inputs"] * input_factor)
    assert blocked["unfolded"] == pytest.approx(plain["unfolded"] * input_factor)
    assert blocked["positions"] == plain["positions"] and blocked["calls"] == 1


def test_padding_needs_a_blocked_kernel_a_block_and_known_input_channels():
    layer = dataclasses.replace(_conv2d(24, 24, 100), input_channels=24)
    plain = layer_features(layer)
    unblocked = priced_features(Kernel("conv2d", "fp32", plain, layer), 0, 1 << 20, channel_block=16)
    one_lane = priced_features(Kernel("conv2d", "fp32", plain, layer, blocked=True), 0, 1 << 20, channel_block=1)
    unknown = _conv2d(24, 24, 100)  # a description written before input channels were recorded
    unrecorded_kernel = Kernel("conv2d", "fp32", layer_features(unknown), unknown, blocked=True)
    unrecorded = priced_features(unrecorded_kernel, 0, 1 << 20, channel_block=16)
    assert unblocked["macs"] == one_lane["macs"] == unrecorded["macs"] == plain["macs"]


def _lstm_steps(hidden: int) -> LayerDescription:
    return LayerDescription(
        "lstm.l0.hh", "lstm_recurrent", params=4 * hidden * hidden, macs_per_second=4 * hidden * hidden * 100,
        input_elements_per_second=hidden * 100, output_elements_per_second=4 * hidden * 100, sequential_steps_per_second=100,
    )  # fmt: skip


def test_a_recurrent_matrix_larger_than_the_cache_spills_on_every_step():
    hidden = 512
    matrix = _lstm_steps(hidden)
    kernel = Kernel("lstm_recurrent", "fp32", layer_features(matrix), matrix)
    small_cache = priced_features(kernel, 0, cache_bytes=1024 * 1024)
    large_cache = priced_features(kernel, 0, cache_bytes=64 * 1024 * 1024)
    assert small_cache["spilled_steps"] == pytest.approx(100 * 4 * hidden * hidden * 4)
    assert large_cache["spilled_steps"] == 0
    # The matrix (4 MiB) is twice a 2 MiB cache: all of it spills under the modelled ramp, half
    # under a ramp that keeps it cached up to 1.5 times the cache.
    late = priced_features(kernel, 0, cache_bytes=2 * 1024 * 1024, step_spill=SpillRamp(1.5, 2.5))
    assert late["spilled_steps"] == pytest.approx(small_cache["spilled_steps"] / 2)


@pytest.mark.parametrize(
    ("key", "coefficients", "message"),
    [
        ("conv1d", {"calls": 1.0}, "not op/variant"),
        ("attention/fp32", {"calls": 1.0}, "unknown op"),
        ("requantize/int8", {"calls": 1.0}, "run `search hwcost calibrate` again"),  # a key older calibrations wrote
        ("conv1d/fp32", {"steps": 1.0}, "unknown feature 'steps'"),
        ("activation.prelu/fp32", {"macs": 1.0}, "unknown feature 'macs'"),
    ],
)
def test_coefficients_must_name_a_known_op_and_its_features(key, coefficients, message):
    assert message in check_coefficients(key, coefficients)
    with pytest.raises(ProfileError, match=message):
        profile_from_dict({**BASE, "measured": {"kernels": {key: coefficients}}})


def test_negative_coefficients_are_rejected():
    with pytest.raises(ProfileError, match=r"measured.kernels.conv1d/fp32.calls must be >= 0"):
        profile_from_dict({**BASE, "measured": {"kernels": {"conv1d/fp32": {"calls": -1.0}}}})


def test_activations_an_inference_writes_can_push_its_weights_out_of_the_cache():
    """The same convolution, its weights far smaller than L2, priced in a model whose other layers
    write little and in one whose activations fill several times L2: only the latter pays cold weights."""
    profile = profile_from_dict({**BASE, "measured": {"kernels": {"conv1d/fp32": {"cold_weights": 1.0}}}})
    cache_bytes = profile.l2_kb * 1024
    def act(elements: float) -> LayerDescription:
        return LayerDescription("act", "activation", input_elements_per_second=elements, output_elements_per_second=elements, operation="prelu")
    small, large = (CostModel().estimate(ModelDescription("toy", (CONV, act(elements))), profile) for elements in (100, cache_bytes))
    assert small.layers[0].latency_ms == 0.0
    assert large.layers[0].latency_ms == pytest.approx(CONV.params * 4 / 1e6)


def test_a_profile_prices_recurrent_steps_by_its_calibrated_spill_ramp():
    """A gate matrix 1.5 times L2: half of it spills under the modelled ramp, none under a
    calibrated ramp that starts at 1.6 times L2; a profile without one keeps the modelled ramp."""
    kernels = {"lstm_recurrent/fp32": {"spilled_steps": 1.0}}
    modelled = profile_from_dict({**BASE, "measured": {"kernels": kernels}})
    late = profile_from_dict({**BASE, "measured": {"kernels": kernels, "step_spill": {"start": 1.6, "full": 3.0}}})
    assert modelled.step_spill == DEFAULT_SPILL
    assert late.step_spill == SpillRamp(1.6, 3.0) and "step_spill" in late.measured
    hidden = round((1.5 * modelled.l2_kb * 1024 / 16) ** 0.5)
    steps = ModelDescription("toy", (_lstm_steps(hidden),))
    matrix_bytes = 4 * hidden * hidden * 4
    expected = 100 * matrix_bytes * DEFAULT_SPILL.fraction(matrix_bytes, modelled.l2_kb * 1024) / 1e6
    assert CostModel().estimate(steps, modelled).layers[0].latency_ms == pytest.approx(expected)
    assert expected > 0
    assert CostModel().estimate(steps, late).layers[0].latency_ms == 0.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"start": 1.5, "full": 1.0}, "step_spill.start must be below measured.step_spill.full"),
        ({"start": 0.5}, "missing required key measured.step_spill.full"),
        ({"start": 0.5, "full": 2.0, "end": 3.0}, "unknown key measured.step_spill.end"),
        ([0.5, 2.0], "measured.step_spill must be a mapping"),
        ({"start": -1.0, "full": 2.0}, "measured.step_spill.start must be >= 0"),
    ],
)
def test_a_malformed_step_spill_ramp_is_an_error_naming_it(value, message):
    with pytest.raises(ProfileError, match=message):
        profile_from_dict({**BASE, "measured": {"step_spill": value}})
