import dataclasses
import io
import json
import shutil

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper
from rich.console import Console

from hwcost import CostModel, load_target
from hwcost.profile import TARGETS_DIR
from search.latency_comparison import DEFAULT_TOLERANCE
from search.cli import main
from search.tasks.verification_bundle import MIN_COSINE
from search.verify import print_verification, verify_bundle
from spaces import load_bundle
from spaces.bundle import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def copy(bundle, tmp_path):
    """A copy of the bundle to damage."""
    return shutil.copytree(bundle, tmp_path / "bundle")


def _edit_graph(path, edit) -> None:
    graph = onnx.load(path / ONNX_FILE)
    edit(graph)
    onnx.save(graph, path / ONNX_FILE)


def test_an_exported_bundle_passes_every_check(bundle):
    report = verify_bundle(bundle, timing_seconds=0.05)
    assert report.passed, report.failures
    names = [check.name for check in report.checks]
    assert names == [
        "ONNX graph is valid",
        "quantized layers are integer weights in the graph",
        "integer kernels where the runtime prices them",
        f"embedding cosine >= {MIN_COSINE} on every utterance",
        "EER within 0.1 percentage points",
        "EER reproduces the recorded one",
    ]
    assert "16 utterances" in report.checks[3].detail and "containers UINT4, UINT8" in report.checks[1].detail
    assert report.checks[2].detail == (  # uniform codes: a DequantizeLinear decodes every layer on every run
        "onnxruntime-weight-only: 0 of 13 layer(s) expected as integer kernels; onnxruntime runs 0 integer, "
        "13 float on weights decoded per run, 0 float on constant weights"
    )
    latency = report.latency
    assert latency.runs >= 20 and latency.measured_ms > 0 and latency.target == "x86-avx2"
    assert latency.runtime == "onnxruntime-weight-only" and latency.tolerance.bound == DEFAULT_TOLERANCE
    description = load_bundle(bundle).compressed.description
    weight_only = dataclasses.replace(load_target("x86-avx2"), runtime="onnxruntime-weight-only")
    assert latency.predicted_ms == CostModel().estimate(description, weight_only).latency_ms
    assert latency.predicted_ms != CostModel().estimate(description, "x86-avx2").latency_ms  # packed kernels, not run here


def test_verify_command_prints_checks_and_latency(bundle, capsys):
    assert main(["verify", str(bundle), "--target", "cortex-a53"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count(" pass ") == 6 and "ms per second of audio; cost model on cortex-a53 with onnxruntime-weight-only" in out
    assert "the gap is not judged: target 'cortex-a53' is a profile for aarch64 CPUs" in out
    assert f"test data: the bundle's run {json.loads((bundle / CONFIG_FILE).read_text())['source']['run']}" in out


def test_a_calibrated_profile_sets_the_reference_speed_and_a_validation_report_the_tolerance(bundle, tmp_path, capsys):
    profile = tmp_path / "calibrated.yaml"
    data = yaml.safe_load((TARGETS_DIR / "x86-avx2.yaml").read_text())
    profile.write_text(yaml.safe_dump({**data, "name": "calibrated", "measured": {"provenance": {"reference_ms": 0.5}}}))
    validation = tmp_path / "validation.json"
    models = [{"family": "resnet", "error": 1e-9}, {"family": "xvector", "error": 5.0}]
    validation.write_text(json.dumps({"target": "calibrated", "runtime": "onnxruntime-weight-only", "models": models}))
    report = verify_bundle(bundle, target=str(profile), timing_seconds=0.05, accuracy=validation)
    assert report.passed and report.latency.reference_ms == 0.5 and report.latency.beyond_tolerance  # a warning only
    printed = io.StringIO()
    print_verification(report, Console(file=printed, width=400))
    out = " ".join(printed.getvalue().split())
    assert "median CPU time of" in out and "at load-reference speed 0.500 ms" in out
    assert "warning: the prediction's error (predicted / measured - 1) is" in out
    assert f"beyond the cost model's stated accuracy +-0% (the largest error of {validation} over its 1 resnet model(s))" in out
    validation.write_text(json.dumps({"target": "calibrated", "runtime": "onnxruntime-int8", "models": models}))
    assert main(["verify", str(bundle), "--target", str(profile), "--accuracy", str(validation)]) == 2
    err = capsys.readouterr().err
    assert f"{validation}: runtime='onnxruntime-int8', but the bundle is priced on runtime 'onnxruntime-weight-only'" in err


def test_tampered_weights_exit_2(copy, capsys):
    data = bytearray((copy / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / WEIGHTS_FILE).write_bytes(bytes(data))
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "SHA-256 differs" in err and str(copy) in err and "Traceback" not in err


def test_a_layer_stored_as_float_in_the_graph_fails(copy, capsys):
    weight = load_bundle(copy).model.embedding.weight.detach().numpy()

    def float_embedding(graph):
        decoder = [node for node in graph.graph.node if node.output[0] == "embedding.weight"]
        graph.graph.node.remove(decoder[0])
        graph.graph.initializer.append(numpy_helper.from_array(weight, "embedding.weight"))

    _edit_graph(copy, float_embedding)
    assert main(["verify", str(copy)]) == 1
    out, err = capsys.readouterr()
    assert "embedding: float weights in the graph" in out
    assert "1 check(s) failed: quantized layers are integer weights in the graph" in err


def test_changed_codes_in_the_graph_fail_the_agreement_checks(copy):
    def negate_embedding(graph):
        (codes,) = [tensor for tensor in graph.graph.initializer if tensor.name == "embedding.weight.codes"]
        values = numpy_helper.to_array(codes)
        codes.CopyFrom(numpy_helper.from_array((254 - values.astype(np.int16)).astype(values.dtype), codes.name))

    _edit_graph(copy, negate_embedding)  # embedding is 8-bit: codes 0..254 around 127
    report = verify_bundle(copy, timing_seconds=0.05)
    assert f"embedding cosine >= {MIN_COSINE} on every utterance" in [check.name for check in report.failures]
    assert report.checks[1].passed  # still integer weights: only the numbers changed


def test_a_broken_graph_fails_without_running(copy, capsys):
    _edit_graph(copy, lambda graph: graph.graph.initializer.remove(graph.graph.initializer[0]))
    report = verify_bundle(copy)
    assert [check.name for check in report.failures] == ["ONNX graph is valid", "onnxruntime loads the graph"]
    assert report.latency is None
    (copy / ONNX_FILE).write_bytes(b"not a model")
    assert main(["verify", str(copy)]) == 2
    assert "model.onnx: not an ONNX model" in capsys.readouterr().err


def test_data_with_other_features_exits_2(bundle, tiny, tmp_path, capsys):
    _, run_dir = tiny
    other = tmp_path / "other.yaml"
    other.write_text((run_dir.path / "config.yaml").read_text().replace("num_mel_bins: 24", "num_mel_bins: 32"))
    assert main(["verify", str(bundle), "--data", str(other)]) == 2
    assert "differ from the bundle's" in capsys.readouterr().err


def test_a_bundle_whose_run_is_gone_needs_data(copy, tiny, capsys):
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["source"]["run"] = str(copy / "no-such-run")
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    assert main(["verify", str(copy)]) == 2
    assert "give its data with --data CONFIG" in capsys.readouterr().err
    _, run_dir = tiny
    assert verify_bundle(copy, data=run_dir.path, timing_seconds=0.05).passed


def test_a_recorded_metric_edited_beyond_its_interval_fails(copy, capsys):
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["metrics"]["eer"], config["metrics"]["eer_low"], config["metrics"]["eer_high"] = 0.01, 0.005, 0.015
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    assert main(["verify", str(copy)]) == 1
    out, err = capsys.readouterr()
    assert "1 check(s) failed: EER reproduces the recorded one" in err and "records 1.000%" in " ".join(out.split())


def test_an_unknown_task_in_the_bundle_exits_2(copy, capsys):
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["task"] = "translation"
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "task='translation': expected one of ['verification', 'extraction']" in err and "Traceback" not in err
