"""Measured targets: each trial's model timed on a Ray node of the target's kind, the prediction beside it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from engine_runs import ROOT, kill_session
from evaluators.evaluation import Evaluation
from hwcost import CostModel
from search.measured_latency import timing_graph
from search.onnx_export import weight_storage
from search.trial import measure
from spaces.compress import ModelSpec, compress, quantizable_layers

HERE = Path(__file__).resolve().parent
SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)
CLUSTER_TIMEOUT_S = 300


def evaluation() -> Evaluation:
    """The cluster script's model: every quantizable layer at 4 bits."""
    model = SPEC.build()
    compressed = compress(SPEC, model.state_dict(), {layer: 4 for layer in quantizable_layers(model)})
    return Evaluation({"eer": 0.2, "min_dcf": 0.5, "size_bytes": float(len(compressed.packed))}, compressed)


def prediction(target: str) -> float:
    return CostModel().estimate(evaluation().compressed.description, target).latency_ms


def test_a_measured_targets_latency_is_its_timing_and_its_prediction_is_kept_beside_it():
    metrics = measure(evaluation(), ["x86-avx2", "cortex-a72"], 2000.0, measured_targets=["x86-avx2"], timings={"x86-avx2": 12.3456})
    assert metrics["latency_ms@x86-avx2"] == metrics["latency_ms"] == 12.346
    assert metrics["real_time_factor@x86-avx2"] == metrics["real_time_factor"] == pytest.approx(0.0123456)
    assert metrics["predicted_latency_ms@x86-avx2"] == metrics["predicted_latency_ms"]
    assert metrics["predicted_latency_ms"] == pytest.approx(prediction("x86-avx2"), abs=5e-4)
    assert metrics["latency_ms@cortex-a72"] == pytest.approx(prediction("cortex-a72"), abs=5e-4)
    assert "predicted_latency_ms@cortex-a72" not in metrics


def test_a_model_priced_only_reports_its_prediction_in_both_columns_so_the_reference_row_has_them():
    metrics = measure(evaluation(), ["cortex-a72", "x86-avx2"], 2000.0, measured_targets=["x86-avx2"])
    assert metrics["latency_ms@x86-avx2"] == metrics["predicted_latency_ms@x86-avx2"]
    assert metrics["latency_ms@x86-avx2"] == pytest.approx(prediction("x86-avx2"), abs=5e-4)
    assert "predicted_latency_ms" not in metrics  # the first target is not measured


def test_the_timed_graph_keeps_the_codes_as_integers_and_computes_what_the_model_does():
    model = evaluation().compressed
    graph, feeds = timing_graph(model, SPEC)
    storage = weight_storage(onnx.load_from_string(graph))
    assert set(storage) == set(quantizable_layers(model.model)) and all(item.integer for item in storage.values())
    (output,) = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        expected = model.model(*(torch.from_numpy(value) for value in feeds.values())).numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def cluster_run():
    """`measured_latency_cluster.py`'s findings, from its own process and two-node Ray cluster."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short socket paths, not the machine's current-cluster file
    process = subprocess.Popen(
        [sys.executable, str(HERE / "measured_latency_cluster.py")],
        cwd=ROOT,
        env={**os.environ, "RAY_TMPDIR": ray_tmp},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=CLUSTER_TIMEOUT_S)
    finally:
        kill_session(process.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_the_timing_runs_on_the_node_that_advertises_the_resource_and_not_where_the_trial_runs(cluster_run):
    assert cluster_run["trial_node"] == cluster_run["head"] != cluster_run["device"]
    reports = cluster_run["reports"]
    assert [report["rung"] for report in reports] == [0, 1]
    for report in reports:
        assert report["timed_on@x86-avx2"] == cluster_run["device"]
        assert 0 < report["latency_ms@x86-avx2"] < 1000
        assert report["predicted_latency_ms@x86-avx2"] == pytest.approx(prediction("x86-avx2"), abs=5e-4)
        assert report["latency_ms@x86-avx2"] != report["predicted_latency_ms@x86-avx2"]
        assert "timed_on@cortex-a72" not in report and "predicted_latency_ms@cortex-a72" not in report


@pytest.mark.parametrize(
    "case, asked",
    [("missing device", "{'CPU': 1.0, 'jetson': 1}"), ("more CPUs than the device has", "{'CPU': 2.0, 'rpi4': 1}")],
)
def test_a_timing_no_node_can_run_fails_the_trial_at_its_timeout_with_the_reason(cluster_run, case, asked):
    error, seconds = cluster_run["failures"][case]
    assert f"latency on 'x86-avx2': not timed within 2 s by a node with {asked}" in error
    assert "no live node of the cluster advertises them" in error
    assert 2.0 <= seconds < 60
