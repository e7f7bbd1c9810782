"""A search's 8-bit-activation trials export as integer (QDQ) bundles: the evaluator measures the
candidate with activation quantizers for integer kernels, weights.bin keeps their steps, load_bundle
puts them back, and the bundle's graph runs every quantized layer on integer kernels."""

import dataclasses

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from evaluators.finetune import FineTuner
from evaluators.finetune_data import FineTuneData
from evaluators.verification_fidelity import VerificationFidelity
from hwcost.runtimes import INT8
from search.artifacts import read_artifact
from search.export import ExportError, _rebuild, export_bundle
from search.kernel_census import kernel_census
from search.verify import verify_bundle
from spaces import load_bundle
from spaces.bundle import ONNX_FILE
from spaces.compress import ModelSpec, PackedModelError, quantizable_layers, rebuild_compressed
from spaces.plan import LayerQuantization
from spaces.quant import pack_weights, unpack_weights
from spaces.quant.integer_activations import STORED_STATE, activation_quantizers
from tiny_config import tiny_config
from tiny_run import write_measured_run

pytestmark = pytest.mark.usefixtures("single_thread")

SPACE = (
    "{knobs: [{name: bits.front, layers: ['stem*', 'layer1.*', 'layer2.*'], bits: [4, 8]},"
    " {name: bits.back, layers: ['layer3.*', 'layer4.*', 'embedding'], bits: [4, 8]},"
    " {name: activation_bits, choices: [8, 32]}]}"
)
TRIALS = {0: {"bits.front": 4, "bits.back": 8}}
"""Trial -> bits per knob, with the space's default activation bits, 8."""


@pytest.fixture(scope="module")
def integer_run(tmp_path_factory, tiny_cache_dir, single_thread):
    """The tiny verification run with 8-bit-activation trials, measured as the engine measures them."""
    return write_measured_run(tmp_path_factory.mktemp("integer-run"), tiny_config(tiny_cache_dir, SPACE), TRIALS)


@pytest.fixture(scope="module")
def integer_bundle(integer_run, tmp_path_factory):
    """Trial 0 (4-bit uniform weights in front, 8-bit `uniform-reduced` behind, 8-bit activations) exported."""
    _, run_dir = integer_run
    out = tmp_path_factory.mktemp("integer-bundles") / "trial-0"
    export_bundle(run_dir.path, trial=0, out=out)
    return out


def test_the_candidate_is_measured_with_frozen_8_bit_activations_whose_steps_are_packed(integer_run):
    _, run_dir = integer_run
    artifact_model = _artifact(run_dir, 0).rebuild().model
    quantizers = activation_quantizers(artifact_model)
    assert quantizers and all(q.mode == "quantize" and q.bits == 8 for q in quantizers.values())
    stored = {key.rpartition(".")[2] for key in unpack_weights(_artifact(run_dir, 0).packed) if ".activation_" in key}
    assert stored == set(STORED_STATE)  # the observed range and the frozen flag are not stored
    rows = {row["trial"]: row for row in run_dir.read_trials()}
    assert rows[0]["activation_bits"] == 8 and rows[0]["size_bytes"] == len(_artifact(run_dir, 0).packed)


def test_the_bundle_rebuilds_its_activation_quantizers_and_runs_every_quantized_layer_on_integer_kernels(integer_bundle):
    bundle = load_bundle(integer_bundle)
    assert bundle.config.activation_bits == 8
    assert {(layer.bits, layer.quantizer) for layer in bundle.config.layers.values()} == {(4, "uniform"), (8, "uniform-reduced")}
    quantizers = activation_quantizers(bundle.model)
    assert quantizers and all(q.mode == "quantize" for q in quantizers.values())
    graph = onnx.load(integer_bundle / ONNX_FILE)
    census = kernel_census(graph, list(bundle.quantized))
    assert sorted(census) == sorted(bundle.quantized)
    assert {layer: kernels.variant for layer, kernels in census.items()} == dict.fromkeys(bundle.quantized, INT8)
    features = torch.randn(3, 97, bundle.config.features.num_mel_bins, generator=torch.Generator().manual_seed(5))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (measured,) = session.run(None, {"features": features.numpy()})
    with torch.no_grad():
        expected = bundle.model(features).numpy()
    cosine = (measured * expected).sum(1) / np.linalg.norm(measured, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.999


def test_search_verify_passes_on_the_integer_bundle(integer_bundle):
    report = verify_bundle(integer_bundle, timing_seconds=0.05)
    assert report.passed, report.failures
    assert report.latency.runtime == "onnxruntime-int8"
    integer_kernels = next(check for check in report.checks if check.name == "integer kernels where the runtime prices them")
    assert "13 of 13 layer(s) expected as integer kernels; onnxruntime runs 13 integer" in integer_kernels.detail  # 4- and 8-bit


def test_activation_steps_without_activation_bits_do_not_rebuild(integer_run):
    _, run_dir = integer_run
    artifact = _artifact(run_dir, 0)
    with pytest.raises(PackedModelError, match="activation_bits 32"):
        rebuild_compressed(artifact.spec, artifact.packed, artifact.share_repeated_blocks)


def test_quantized_activations_the_weights_do_not_store_are_refused(integer_run):
    _, run_dir = integer_run
    artifact = _artifact(run_dir, 0)
    entries = {key: entry for key, entry in unpack_weights(artifact.packed).items() if ".activation_" not in key}
    hooked = dataclasses.replace(artifact, packed=pack_weights(entries))  # activations quantized outside the modules (extraction)
    with pytest.raises(ExportError, match="store no steps of its 8-bit activations"):
        _rebuild(hooked)


def test_fine_tuning_learns_the_activation_steps_and_packs_them():
    spec = ModelSpec("resnet", dict(num_mel_bins=16, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=8), 16, 100, 16000)
    torch.manual_seed(0)
    teacher = spec.build().state_dict()
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(40, 16, generator=generator) for _ in range(8)]
    data = FineTuneData(features, [index % 2 for index in range(8)], None)
    fidelity = VerificationFidelity(steps=(0, 3), batch_size=4, crop_frames=30, classification_weight=0.0, distillation_weight=1.0)
    layers = {name: LayerQuantization(8) for name in quantizable_layers(spec.build())}
    calibration = [torch.randn(4, 30, 16, generator=generator) for _ in range(2)]
    tuner = FineTuner(spec, teacher, layers, data, fidelity, seed=0, activation_bits=8, calibration_batches=calibration)
    calibrated = _steps(tuner.student)
    tuner.train_to(3)
    learned = _steps(tuner.student)
    assert calibrated and learned.keys() == calibrated.keys() and learned != calibrated  # the optimiser trains the steps
    compressed = tuner.compressed()
    assert _steps(compressed.model) == learned
    rebuilt = rebuild_compressed(spec, compressed.packed, activation_bits=8)
    batch = torch.randn(2, 50, 16, generator=generator)
    with torch.no_grad():
        assert torch.equal(rebuilt.model(batch), compressed.model(batch))
    assert {layer.activation_bits for layer in compressed.description.layers} == {8}


def _steps(model):
    return {point: quantizer.step.item() for point, quantizer in activation_quantizers(model).items()}


def _artifact(run_dir, trial):
    return read_artifact(run_dir, trial)
