"""Peak memory: the runtime's fixed cost, its weight copies and the activations it holds."""

from __future__ import annotations

import pytest

from hwcost import CostModel, ProfileError, get_runtime, profile_from_dict
from hwcost.memory import ARENA_FIRST_REGION_BYTES, MemoryCoefficients, memory_features, peak_memory
from spaces.description import LayerDescription, ModelDescription
from hand_profile import HAND_CPU

BASE = HAND_CPU
MEMORY = {
    "fixed_bytes": 10e6,
    "kernel_type_bytes": 1e5,
    "weight_copies": {"conv1d/fp32": 2.0},
    "activation_factor": 1.5,
    "live_factor": 0.0,
    "pattern_factor": 0.0,
    "decoded_factor": 1.0,
}


def _conv(name: str, params: int = 1000, elements: int = 5000, **fields) -> LayerDescription:
    return LayerDescription(
        name, "conv1d", params=params, extra_params=10, macs_per_second=params * 100, input_elements_per_second=elements,
        output_elements_per_second=elements, **fields,
    )  # fmt: skip


def _relu(name: str, elements: int = 5000) -> LayerDescription:
    return LayerDescription(
        name, "activation", input_elements_per_second=elements, output_elements_per_second=elements, operation="relu"
    )


def _model(*layers: LayerDescription) -> ModelDescription:
    return ModelDescription("toy", layers)


def test_uncalibrated_peak_is_one_copy_of_the_weights_the_runtime_keeps_plus_the_largest_activation_set():
    model = _model(_conv("a"), _relu("relu"), _conv("b", params=2000, elements=8000))
    estimate = CostModel().estimate(model, profile_from_dict({**BASE, "runtime": "onnxruntime-fp32"}))
    assert estimate.peak_memory_bytes == (1010 + 2010) * 4 + 16000 * 4


def test_calibrated_peak_adds_fixed_and_per_kernel_type_costs_and_scales_copies_and_activations():
    model = _model(_conv("a"), _relu("relu"), _conv("b", params=2000, elements=8000))
    profile = profile_from_dict({**BASE, "runtime": "onnxruntime-fp32", "measured": {"memory": MEMORY}})
    # kernel types: conv1d/fp32 (the ReLU fuses into it) and the inference's fixed work
    expected = 10e6 + 2 * 1e5 + 2.0 * (1010 + 2010) * 4 + 1.5 * 16000 * 4
    assert CostModel().estimate(model, profile).peak_memory_bytes == pytest.approx(expected, abs=1)


def test_shared_weights_are_held_once():
    runtime = get_runtime("onnxruntime-fp32")
    alone = memory_features(runtime.lower(_model(_conv("a"))), runtime)
    twice = memory_features(runtime.lower(_model(_conv("a"), _conv("a2", shared_with="a"))), runtime)
    assert twice.weights == alone.weights


def test_weights_decoded_on_every_run_count_once_at_their_float_size():
    runtime = get_runtime("onnxruntime-weight-only")
    quantized = {"weight_bits": 8, "quantizer": "uniform", "weight_decoding": "linear"}
    lowering = runtime.lower(_model(_conv("a", **quantized), _conv("b", params=3000, **quantized)))
    features = memory_features(lowering, runtime)
    assert features.decoded == 3000 * 4
    assert features.weights == {"conv1d/fp32-decoded": (1000 + 3000) * 1 + 2 * 10 * 4}
    assert peak_memory(lowering, runtime, MemoryCoefficients()).decoded_bytes == 3000 * 4


def test_a_memory_section_needs_every_term():
    partial = {key: value for key, value in MEMORY.items() if key != "decoded_factor"}
    with pytest.raises(ProfileError, match="missing required key measured.memory.decoded_factor"):
        profile_from_dict({**BASE, "measured": {"memory": partial}})


def test_weight_copies_must_name_cost_keys():
    bad = {**MEMORY, "weight_copies": {"attention/fp32": 1.0}}
    with pytest.raises(ProfileError, match="unknown op 'attention'"):
        profile_from_dict({**BASE, "measured": {"memory": bad}})


def test_live_activations_beyond_the_arenas_first_region_are_held_again_by_the_memory_pattern():
    runtime = get_runtime("onnxruntime-fp32")
    small, large = 50_000, 400_000  # elements: 0.4 MB of outputs live at once, then 3.2 MB
    coefficients = MemoryCoefficients(activation_factor=0.0, live_factor=1.5, pattern_factor=2.0)
    for elements in (small, large):
        lowering = runtime.lower(_model(_conv("a", elements=elements), _conv("b", elements=elements)))
        features = memory_features(lowering, runtime)
        assert features.live == 2 * elements * 4  # both outputs: b reads a's
        beyond = max(0.0, features.live - ARENA_FIRST_REGION_BYTES)
        assert features.live_beyond_first_region == beyond
        assert peak_memory(lowering, runtime, coefficients).activation_bytes == 1.5 * features.live + 2.0 * beyond
    assert beyond > 0
