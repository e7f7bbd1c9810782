import math

import pytest

from evaluators.evaluation import Evaluation
from search.trial import TrialFailure, measure
from spaces.compress import ModelSpec, compress

SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)


def evaluation(eer: float) -> Evaluation:
    compressed = compress(SPEC, SPEC.build().state_dict(), {})
    size = float(compressed.description.size_bytes)
    return Evaluation({"eer": eer, "min_dcf": 0.5, "size_bytes": size}, compressed)


def test_costs_reported_per_target_and_unsuffixed_for_the_first():
    metrics = measure(evaluation(0.1), ["cortex-a72", "cortex-a53"], reference_size_bytes=2.0 * 1000)
    assert metrics["latency_ms"] == metrics["latency_ms@cortex-a72"]
    assert metrics["latency_ms@cortex-a53"] > metrics["latency_ms@cortex-a72"]
    assert math.isclose(metrics["compression_ratio"], 2000 / metrics["size_bytes"])
    assert {"peak_memory_bytes@cortex-a53", "real_time_factor@cortex-a72"} <= set(metrics)


def test_nan_metric_fails_the_trial_with_its_name():
    with pytest.raises(TrialFailure, match=r"non-finite metric\(s\) \['eer'\]"):
        measure(evaluation(float("nan")), ["cortex-a72"], reference_size_bytes=1000)
