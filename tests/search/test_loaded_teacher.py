"""A run whose teacher is loaded from a checkpoint: export, load, bad checkpoints, a search over it."""

import re

import pytest
import torch

from evaluators.frontends.ge2e import MIN_COVERAGE, PARTIAL_FRAMES, WINDOW_STEP_FRAMES
from search.cli import main
from search.config import ConfigError, load_config
from search.engine import run_search
from search.run_dir import RunDirectory
from search.tasks import get_task
from search.verify import MIN_COSINE, verify_bundle
from spaces import load_bundle
from spaces.bundle import L2_NORMALISED_MEAN, MODEL_CARD_FILE, PartialWindows
from spaces.checkpoints import read_native_checkpoint
from tiny_config import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


class NotATensor:
    """A pickled object a checkpoint must never execute its way into."""


def _config(tmp_path, cache, teacher: str, name: str = "loaded.yaml", extra: str = "") -> str:
    text = tiny_config(cache, extra=extra).replace("teacher: {steps: 15, batch_size: 8, crop_frames: 80}", teacher)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_cache_dir):
    """The tiny run's trained teacher written by `search teacher export`."""
    folder = tmp_path_factory.mktemp("teacher")
    config = folder / "tiny.yaml"
    config.write_text(tiny_config(tiny_cache_dir))
    out = folder / "teacher.pt"
    assert main(["teacher", "export", str(config), "--out", str(out)]) == 0
    return config, out


def _prepared(path):
    config = load_config(path)
    task = get_task(config.task)
    return task.evaluator().prepare(task.setup(config))


def test_an_exported_teacher_loads_bit_for_bit_and_is_not_trained_again(exported, tmp_path, tiny_cache_dir):
    trained_config, checkpoint = exported
    loaded_config = _config(tmp_path, tmp_path / "fresh-cache", f"teacher: {{checkpoint: {checkpoint}, format: native}}")
    loaded = _prepared(loaded_config)  # an empty cache: a teacher here would have to be trained
    trained = _prepared(trained_config)
    assert loaded.teacher_state.keys() == trained.teacher_state.keys()
    assert all(torch.equal(loaded.teacher_state[key], trained.teacher_state[key]) for key in trained.teacher_state)
    assert not list((tmp_path / "fresh-cache").glob("teacher-*"))
    assert read_native_checkpoint(checkpoint).spec == trained.spec


def test_teacher_export_refuses_to_overwrite(exported, capsys):
    config, checkpoint = exported
    assert main(["teacher", "export", str(config), "--out", str(checkpoint)]) == 2
    assert "already exists" in capsys.readouterr().err


def _broken(tmp_path, checkpoint, edit):
    state = read_native_checkpoint(checkpoint).state_dict
    path = tmp_path / "broken.pt"
    torch.save(edit(dict(state)), path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda state: {key: value for key, value in state.items() if not key.startswith("embedding")}, "missing: embedding"),
        (lambda state: {**state, "extra.weight": torch.zeros(2)}, "1 unexpected: extra.weight"),
        (lambda state: {**state, "embedding.weight": torch.zeros(3, 3)}, r"of other shapes: embedding.weight \(3, 3\)"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_one_error_before_anything_runs(exported, tmp_path, edit, message, capsys):
    path = _broken(tmp_path, exported[1], edit)
    config = _config(tmp_path, tmp_path / "cache", f"teacher: {{checkpoint: {path}, format: speechbrain}}")
    for argv in (["space", config], ["run", config, "--out", str(tmp_path / "results")]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "teacher.checkpoint" in error and str(path) in error
        assert re.search(message, error), error
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_a_checkpoint_pickling_an_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"embedding.weight": NotATensor()}, path)
    config = _config(tmp_path, tmp_path / "cache", f"teacher: {{checkpoint: {path}}}")
    assert main(["space", config]) == 2
    error = capsys.readouterr().err
    assert "NotATensor" in error and str(path) in error and "Traceback" not in error


def test_a_search_over_a_loaded_teacher(exported, tmp_path, tiny_cache_dir, ray_session):
    search = "search: {trials: 3, workers: 2}\n"
    teacher = f"teacher: {{checkpoint: {exported[1]}, format: native}}"
    config = load_config(_config(tmp_path, tiny_cache_dir, teacher, extra=search))
    outcome = run_search(config, RunDirectory.create(tmp_path / "results", config.name))
    assert len(outcome.trials) == 3 and all(row["status"] == "complete" for row in outcome.trials)
    assert outcome.front and 0 <= outcome.reference["eer"] <= 0.5


def test_the_ge2e_config_loads_the_weights_shipped_in_the_resemblyzer_wheel():
    config = load_config("configs/sv_ge2e.yaml")
    assert config.features.frontend == "ge2e" and config.teacher.checkpoint.startswith("package:resemblyzer/")
    get_task(config.task).check_exportable(config)  # its bundles record the front-end's windows


def test_a_ge2e_bundle_takes_windows_and_records_how_to_pool_them(ge2e_bundle):
    config = load_bundle(ge2e_bundle).config
    assert config.features.windows == PartialWindows("ge2e", PARTIAL_FRAMES, WINDOW_STEP_FRAMES, MIN_COVERAGE, L2_NORMALISED_MEAN)
    assert [(spec.name, spec.shape) for spec in config.inputs] == [("features", ("windows", "frames", 40))]
    assert [(spec.name, spec.shape) for spec in config.outputs] == [("embedding", ("windows", 16))]
    assert set(config.layers) == {"lstm.l0.ih", "lstm.l0.hh", "lstm.l1.ih", "lstm.l1.hh", "linear"}
    card = (ge2e_bundle / MODEL_CARD_FILE).read_text()
    windows = f"partial windows of {PARTIAL_FRAMES} frames, one every {WINDOW_STEP_FRAMES} frames"
    for text in (windows, "zero-padded to the end of the last window", "webrtcvad", "window_embeddings.mean(dim=0)"):
        assert text in card


def test_a_ge2e_bundle_verifies_with_integer_lstm_weights_and_pooled_embeddings(ge2e_bundle):
    report = verify_bundle(ge2e_bundle, timing_seconds=0.05)
    assert report.passed, report.failures
    checks = {check.name: check.detail for check in report.checks}
    assert checks["quantized layers are integer weights in the graph"] == "5 layer(s), containers UINT4"
    assert checks["integer kernels where the runtime prices them"] == (  # LSTM gate matrices sliced from decoded codes
        "onnxruntime-weight-only: 0 of 5 layer(s) expected as integer kernels; onnxruntime runs 0 integer, "
        "5 float on weights decoded per run, 0 float on constant weights"
    )
    assert "12 utterances of 'synthetic' (pooled from" in checks[f"embedding cosine >= {MIN_COSINE} on every utterance"]


@pytest.mark.parametrize(
    "change, message",
    [
        ("features: {frontend: wespeaker, num_mel_bins: 40}\nmodel: {family: wespeaker_resnet}\n",
         "features.num_mel_bins=40: the wespeaker front-end computes 80 bands; set num_mel_bins: 80"),
        ("features: {frontend: ge2e, num_mel_bins: 40}\nmodel: {family: ge2e}\n",
         "teacher.checkpoint: the ge2e front-end's windows cannot train a teacher; load one"),
        ("features: {frontend: kaldi2}\n", "features.frontend='kaldi2': expected one of \\['kaldi', 'wespeaker'"),
        ("teacher: {format: onnx}\n", "teacher.format='onnx': expected one of"),
        ("teacher: {checkpoint: package:no-such-dist/model.pt}\n", "package 'no-such-dist' is not installed"),
    ],
)
def test_front_end_and_checkpoint_settings_are_checked_at_load(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\n{change}")
    with pytest.raises(ConfigError, match=message):
        load_config(path)
