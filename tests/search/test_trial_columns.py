"""Metric names and units shared by TensorBoard and the HTML report."""

from search.trial_columns import knob_keys, metric_keys, metric_labels, shown_labels

REFERENCE = {
    "trial": "fp32", "status": "reference", "eer": 0.2, "eer@an4": 0.2, "eer@vox": 0.3, "size_bytes": 2_500_000.0,
    "latency_ms@cortex-a72": 4.0, "latency_ms": 4.0, "latency_ms@x86-avx2": 1.0, "peak_memory_bytes": 90_000.0,
    "my_score": 0.5,
}
TRIAL = {
    "trial": 0, "status": "complete", "quantizer": "uniform", "bits.stem": 4, **{k: v for k, v in REFERENCE.items()
    if k not in ("trial", "status")}, "steps": 0, "feasible": True, "node": "n", "attempts": 1, "error": "", "seconds": 2.0,
}


def test_first_targets_and_sets_copies_name_the_unsuffixed_metric_and_show_once():
    labels = metric_labels(metric_keys(REFERENCE), [REFERENCE, TRIAL])
    assert labels["eer"].text == "EER on an4 (%)" and labels["eer@vox"].text == "EER on vox (%)"
    assert labels["latency_ms"].text == "latency on cortex-a72 (ms)"
    assert labels["latency_ms@x86-avx2"].text == "latency on x86-avx2 (ms)"
    shown = [label.text for label in shown_labels(labels, ["latency_ms", "eer"])]
    assert shown == [
        "latency on cortex-a72 (ms)", "EER on an4 (%)", "EER on vox (%)", "size (MB)", "latency on x86-avx2 (ms)",
        "peak memory (kB)", "my_score", "trial time (s)",
    ]


def test_a_suffixed_metric_that_differs_is_no_copy():
    other = dict(TRIAL, **{"latency_ms@cortex-a72": 4.5})
    labels = metric_labels(metric_keys(REFERENCE), [REFERENCE, other])
    assert labels["latency_ms"].text == "latency (ms)"
    assert labels["latency_ms@cortex-a72"].text == "latency on cortex-a72 (ms)"


def test_values_are_shown_in_the_labels_unit():
    labels = metric_labels(metric_keys(REFERENCE), [REFERENCE, TRIAL])
    assert labels["eer"].format(0.0512) == "5.12 %"
    assert labels["size_bytes"].format(2_500_000.0) == "2.5 MB"
    assert labels["peak_memory_bytes"].format(90_000.0) == "90 kB"
    assert labels["my_score"].format(None) == "" and labels["my_score"].format(float("nan")) == ""
    params = metric_labels(["params"], [{"params": 22948}])["params"]
    assert params.number(22948) == "22948"


def test_knobs_are_what_is_neither_metric_nor_bookkeeping():
    assert knob_keys([TRIAL], metric_keys(REFERENCE)) == ["quantizer", "bits.stem"]
