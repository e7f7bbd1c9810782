import numpy as np
import pytest

from search.resolution import COST_MODEL_RESOLUTION, EXACT, Resolution, beats, clearly_better, default_resolution


@pytest.mark.parametrize(
    "value, resolution, text",
    [(0.002, Resolution(0.002), "0.002"), ("10%", Resolution(0.1, relative=True), "10%"), (0, EXACT, "exact")],
)
def test_resolution_reads_numbers_and_percentages_and_writes_them_back(value, resolution, text):
    assert Resolution.parse(value) == resolution and str(resolution) == text
    assert Resolution.parse(resolution.to_config()) == resolution


@pytest.mark.parametrize("value", [-1, "-5%", "100%", "5 %%", "fast", None, False, float("inf")])
def test_resolution_rejects_what_is_not_a_usable_tolerance(value):
    with pytest.raises(ValueError, match="resolution"):
        Resolution.parse(value)


def test_every_cost_model_prediction_defaults_to_the_cost_model_resolution():
    for metric in ("latency_ms", "latency_ms@cortex-a53", "peak_memory_bytes", "real_time_factor@x86-avx2"):
        assert default_resolution(metric) == COST_MODEL_RESOLUTION
    for metric in ("eer", "eer@an4", "size_bytes", "si_sdri", "compression_ratio"):
        assert default_resolution(metric) == EXACT


def test_a_relative_tolerance_is_a_fraction_of_the_better_value():
    # 10% of the better (lower) 2.0 is 0.2: 2.19 ties, 2.21 does not, in either order.
    values = np.array([[2.0], [2.19], [2.21]])
    better = clearly_better(values, [Resolution(0.1, relative=True)])[..., 0]
    assert better.tolist() == [[False, False, True], [False, False, False], [False, False, False]]


def test_with_exact_resolutions_beating_is_pareto_dominance():
    values = np.array([[1.0, 2.0], [1.0, 3.0], [0.5, 4.0], [1.0, 2.0]])
    assert beats(values, [EXACT, EXACT]).tolist() == [
        [False, True, False, False],
        [False, False, False, False],
        [False, False, False, False],
        [False, True, False, False],
    ]
