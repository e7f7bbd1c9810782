import json

import pytest

from hwcost import load_target
from search.config import ConfigError
from search.latency_comparison import DEFAULT_TOLERANCE, LatencyComparison, LatencyTolerance, stated_accuracy


def _report(path, models, target="x86-avx2", runtime="onnxruntime-weight-only"):
    path.write_text(json.dumps({"target": target, "runtime": runtime, "models": models}))
    return path


def test_the_tolerance_is_the_largest_validation_error_on_the_bundle_s_family(tmp_path):
    profile = load_target("x86-avx2")
    models = [{"family": "resnet", "error": 0.12}, {"family": "resnet", "error": -0.31}, {"family": "xvector", "error": 2.0}]
    report = _report(tmp_path / "validation.json", models)
    tolerance = stated_accuracy(profile, "onnxruntime-weight-only", "resnet", report)
    assert tolerance.bound == pytest.approx(0.31) and "its 2 resnet model(s)" in tolerance.source
    other = stated_accuracy(profile, "onnxruntime-weight-only", "ge2e", report)
    assert other.bound == pytest.approx(2.0) and "all 3 of its models (none is ge2e)" in other.source
    assert stated_accuracy(profile, "onnxruntime-weight-only", "resnet").bound == DEFAULT_TOLERANCE


def test_a_profile_of_another_instruction_set_is_not_judged(tmp_path):
    tolerance = stated_accuracy(load_target("cortex-a72"), "onnxruntime-weight-only", "resnet")
    assert tolerance.bound is None and "aarch64" in tolerance.source
    comparison = LatencyComparison(1.0, 0.0, 90, 0.1, "cortex-a72", "onnxruntime-weight-only", 9.0, tolerance)
    assert not comparison.beyond_tolerance


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not JSON"),
        ('{"target": "x86-avx2", "runtime": "onnxruntime-weight-only"}', "with keys target, runtime, models"),
        ('{"target": "x86-avx2", "runtime": "onnxruntime-weight-only", "models": [{"family": "resnet"}]}',
         "models[0] lacks one of family, error"),
        ('{"target": "cortex-a53", "runtime": "onnxruntime-weight-only", "models": [{"family": "resnet", "error": 0.1}]}',
         "target='cortex-a53', but the bundle is priced on target 'x86-avx2'"),
    ],
)  # fmt: skip
def test_a_bad_validation_report_names_the_file_and_the_key(tmp_path, content, message):
    path = tmp_path / "validation.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="validation.json: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        stated_accuracy(load_target("x86-avx2"), "onnxruntime-weight-only", "resnet", path)


def test_the_gap_is_flagged_beyond_the_tolerance_by_validation_s_error():
    tolerance = LatencyTolerance(0.25, "test")
    within = LatencyComparison(1.2, 0.0, 90, 0.1, "x86-avx2", "onnxruntime-weight-only", 1.0, tolerance)
    beyond = LatencyComparison(1.4, 0.0, 90, 0.1, "x86-avx2", "onnxruntime-weight-only", 1.0, tolerance)
    assert within.error == pytest.approx(1 / 1.2 - 1) and not within.beyond_tolerance  # -16.7%
    assert beyond.ratio == pytest.approx(1.4) and beyond.beyond_tolerance  # -28.6%
