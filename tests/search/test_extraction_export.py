"""`search export` and `search verify` on a speaker-extraction run: mixture + enrollment -> estimate."""

import json
import shutil

import onnx
import pytest
import torch

from evaluators.extraction import ExtractionEvaluator
from evaluators.extraction_training import extract
from search.cli import main
from search.onnx_export import unused_layers, weight_storage
from search.tasks.extraction_bundle import MAX_SI_SDRI_DIFFERENCE
from search.verify import verify_bundle
from spaces import load_bundle
from spaces.bundle import CONFIG_FILE, MODEL_CARD_FILE, ONNX_FILE, WEIGHTS_FILE, example_inputs
from test_extraction_search import TINY
from tiny_run import write_measured_run
from search.tasks.extraction_setup import extraction_setup

pytestmark = pytest.mark.usefixtures("single_thread")

MIXED_BITS = {"bits.encoder": 8, "bits.voiceprint": 4, "bits.bottleneck": 8, "bits.stack0": 3, "bits.stack1": 4,
              "bits.cue": 8, "bits.mask": 4, "bits.decoder": 8}  # fmt: skip
"""The exported trial: 3-, 4- and 8-bit layers, the decoder's ConvTranspose1d among them."""
TRIAL_BITS = {0: 8, 1: MIXED_BITS}
EXPORTED_TRIAL = 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, single_thread):
    """A tiny extraction run (the extraction search test's config, with 4 bits among the choices and
    float16 side data)."""
    root = tmp_path_factory.mktemp("tiny-extraction")
    text = TINY.format(cache=root / "cache").replace("bits: [3, 8]", "bits: [3, 4, 8], side_bits: 16")
    return write_measured_run(root, text, TRIAL_BITS)


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory):
    """Trial `EXPORTED_TRIAL` exported through the CLI."""
    _, run_dir = tiny
    out = tmp_path_factory.mktemp("extraction-bundles") / "mixed"
    assert main(["export", str(run_dir.path), "--trial", str(EXPORTED_TRIAL), "--out", str(out)]) == 0
    return out


def _row(run_dir, trial):
    return next(row for row in run_dir.read_trials() if row["trial"] == trial)


def test_bundle_has_the_extraction_signature_and_weights_of_size_bytes(tiny, bundle):
    _, run_dir = tiny
    row = _row(run_dir, EXPORTED_TRIAL)
    assert sorted(path.name for path in bundle.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, MODEL_CARD_FILE])
    assert (bundle / WEIGHTS_FILE).stat().st_size == row["size_bytes"]
    config = json.loads((bundle / CONFIG_FILE).read_text())
    assert config["task"] == "extraction" and config["family"] == "extractor" and config["features"] is None
    assert config["sample_rate"] == 8000 and config["size_bytes"] == row["size_bytes"] and config["side_bits"] == 16
    assert config["inputs"] == [{"name": "mixture", "shape": ["batch", "samples"]},
                                {"name": "enrollment", "shape": ["batch", "enrollment_samples"]}]  # fmt: skip
    assert config["outputs"] == [{"name": "estimate", "shape": ["batch", "samples"]}]
    assert config["layers"]["decoder"] == {"bits": 8, "quantizer": "uniform"}
    assert {layer["bits"] for layer in config["layers"].values()} == {3, 4, 8}
    metrics = config["metrics"]
    assert metrics["si_sdri"] == pytest.approx(row["si_sdri"]) and metrics["sdri"] == pytest.approx(row["sdri"])
    assert metrics["si_sdri_low"] <= metrics["si_sdri"] <= metrics["si_sdri_high"] and metrics["test_mixtures"] == 3


def test_load_bundle_gives_the_estimates_of_the_run_model(tiny, bundle):
    config, run_dir = tiny
    evaluator = ExtractionEvaluator()
    prepared = evaluator.prepare(extraction_setup(config))
    candidate = {knob: _row(run_dir, EXPORTED_TRIAL)[knob] for knob in prepared.space.knobs}
    expected = evaluator.evaluate(candidate, prepared).compressed
    loaded = load_bundle(bundle)
    assert loaded.compressed.packed == expected.packed
    with torch.no_grad():
        for ours, theirs in zip(extract(loaded.model, prepared.test_set), extract(expected.model, prepared.test_set)):
            assert torch.equal(ours, theirs)


def test_onnx_keeps_every_used_quantized_layer_as_integer_codes(bundle):
    storage = weight_storage(onnx.load(bundle / ONNX_FILE))
    loaded = load_bundle(bundle)
    unused = unused_layers(loaded.model, example_inputs(loaded.config), list(loaded.quantized))
    assert unused == {"stacks.1.blocks.1.residual"}  # the last stack's residual output is never read
    assert {layer: storage[layer].dtype for layer in loaded.quantized if layer not in unused} == {
        layer: "UINT4" if weight.bits <= 4 else "UINT8" for layer, weight in loaded.quantized.items() if layer not in unused
    }
    graph = onnx.load(bundle / ONNX_FILE).graph
    assert {"ConvTranspose", "PRelu", "InstanceNormalization"} <= {node.op_type for node in graph.node}
    assert [dim.dim_param for dim in graph.input[0].type.tensor_type.shape.dim] == ["batch", "samples"]


def test_model_card_shows_si_sdri_and_sdri(bundle):
    card = (bundle / MODEL_CARD_FILE).read_text()
    metrics = json.loads((bundle / CONFIG_FILE).read_text())["metrics"]
    assert f"| SI-SDRi | {metrics['si_sdri']:.2f} dB | {metrics['si_sdri_low']:.2f} to {metrics['si_sdri_high']:.2f} dB |" in card
    assert f"| SDRi | {metrics['sdri']:.2f} dB |" in card and "EER" not in card
    for text in ("speaker-extraction model", "raw 8000 Hz mono audio", '"enrollment": enrollment.numpy()', "| decoder |"):
        assert text in card


def test_verify_passes_with_si_sdri_figures_and_latency(bundle, capsys):
    report = verify_bundle(bundle, timing_seconds=0.05)
    assert report.passed, report.failures
    assert [check.name for check in report.checks] == [
        "ONNX graph is valid",
        "quantized layers are integer weights in the graph",
        "integer kernels where the runtime prices them",
        f"SI-SDRi within {MAX_SI_SDRI_DIFFERENCE} dB",
        "SI-SDRi reproduces the recorded one",
    ]
    assert "3 test mixtures" in report.checks[3].detail and "estimates differ by at most" in report.checks[3].detail
    assert "containers UINT4, UINT8, 1 unused by the outputs" in report.checks[1].detail
    assert report.checks[2].detail.startswith("onnxruntime-weight-only: 0 of ")  # the unused layer is not counted
    assert "not located" not in report.checks[2].detail
    assert report.latency.runs >= 20 and report.latency.measured_ms > 0 and report.latency.predicted_ms > 0


def test_verify_fails_clearly_on_tampered_weights(bundle, tmp_path, capsys):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    data = bytearray((copy / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / WEIGHTS_FILE).write_bytes(bytes(data))
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "weights.bin: SHA-256 differs" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
