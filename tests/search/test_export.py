import dataclasses
import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from evaluators.verification import VerificationEvaluator
from hwcost import available_targets
from search.cli import main
from search.export import choose_trial
from search.model_card import render_model_card
from search.onnx_export import weight_storage
from search.selection import knee_index
from search.tasks import TASKS
from search.tasks.verification_setup import verification_setup
from spaces import load_bundle
from spaces.bundle import CONFIG_FILE, MODEL_CARD_FILE, ONNX_FILE, RUNNER_FILE, WEIGHTS_FILE
from tiny_run import EXPORTED_TRIAL, FAILED_TRIAL, TRIAL_BITS


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def exported(bundle):
    """Trial 2 (mixed bits) exported through the CLI."""
    return bundle


def _row(run_dir, trial):
    return next(row for row in run_dir.read_trials() if row["trial"] == trial)


def test_bundle_files_and_weights_length_is_the_trials_size_bytes(tiny, exported):
    _, run_dir = tiny
    assert sorted(path.name for path in exported.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, MODEL_CARD_FILE, RUNNER_FILE])
    row = _row(run_dir, EXPORTED_TRIAL)
    assert (exported / WEIGHTS_FILE).stat().st_size == row["size_bytes"]
    config = json.loads((exported / CONFIG_FILE).read_text())
    assert config["size_bytes"] == row["size_bytes"] and config["source"]["trial"] == EXPORTED_TRIAL
    assert config["source"]["candidate"] == {knob: row[knob] for knob in TRIAL_BITS[EXPORTED_TRIAL]}
    assert config["layers"]["layer2.0.conv1"] == {"bits": 2, "quantizer": "uniform"}
    assert config["layers"]["stem.0"] == {"bits": 8, "quantizer": "uniform"}
    assert config["features"]["num_mel_bins"] == 24 and config["sample_rate"] == 16000
    metrics = config["metrics"]
    assert metrics["eer"] == pytest.approx(row["eer"]) and metrics["eer_low"] <= metrics["eer"] <= metrics["eer_high"]
    assert {f"latency_ms@{target}" for target in available_targets()} <= set(metrics)


def test_load_bundle_reproduces_the_evaluated_model(tiny, exported):
    config, run_dir = tiny
    evaluator = VerificationEvaluator()
    prepared = evaluator.prepare(verification_setup(config))
    candidate = {knob: _row(run_dir, EXPORTED_TRIAL)[knob] for knob in prepared.space.knobs}
    expected = evaluator.evaluate(candidate, prepared).compressed
    bundle = load_bundle(exported)
    assert bundle.compressed.packed == expected.packed
    with torch.no_grad():
        for features in prepared.test_features[:3]:
            assert torch.equal(bundle.model(features[None]), expected.model(features[None]))


def test_onnx_model_holds_integer_weights_for_every_quantized_layer(exported):
    storage = weight_storage(onnx.load(exported / ONNX_FILE))
    bundle = load_bundle(exported)
    assert {layer: storage[layer].dtype for layer in bundle.quantized} == {
        layer: "UINT4" if weight.bits <= 4 else "UINT8" for layer, weight in bundle.quantized.items()
    }


def test_model_card_has_metrics_with_interval_costs_data_and_usage(exported):
    card = (exported / MODEL_CARD_FILE).read_text()
    metrics = json.loads((exported / CONFIG_FILE).read_text())["metrics"]
    assert f"{100 * metrics['eer']:.2f}% | {100 * metrics['eer_low']:.2f}% to {100 * metrics['eer_high']:.2f}%" in card
    for target in available_targets():
        assert f"| {target} | {metrics[f'latency_ms@{target}']:.3f} |" in card
    for text in ("## Data", "train_speakers 6", "24 mel bins", "load_bundle(", 'runner.load("BUNDLE")', "| layer2.0.conv1 | conv2d |"):
        assert text in card
    assert "compute_fbank" not in card and "evaluators" not in card  # the runner computes the features


def test_model_card_title_names_the_run_not_its_absolute_path(tiny, exported):
    _, run_dir = tiny
    title = (exported / MODEL_CARD_FILE).read_text().splitlines()[0]
    assert title.endswith(f"trial {EXPORTED_TRIAL} of run `{run_dir.path.name}`") and "/" not in title


def test_model_card_describes_the_data_the_run_used(exported):
    bundle = load_bundle(exported)
    card = (exported / MODEL_CARD_FILE).read_text()
    assert "the built-in synthetic corpus" in card and "Trained and evaluated on a synthetic corpus" in card
    on_disk = {
        "sample_rate": 16000,
        "train": {"corpus": "folder", "path": "data/an4", "speakers": "train"},
        "eval": [{"name": "an4", "corpus": "folder", "path": "data/an4", "speakers": "test"}],
    }
    real = dataclasses.replace(
        bundle.config, evaluation={**bundle.config.evaluation, "data": on_disk}, decision={**bundle.config.decision, "eval_set": "an4"}
    )
    text = render_model_card(real, bundle.compressed.description, TASKS["verification"].card)
    assert "folder corpus at `data/an4` (the train side of a seeded speaker-disjoint split)" in text
    assert "`an4`: folder corpus at `data/an4` (the test side" in text
    assert "synthetic" not in text


def test_pick_with_conditions_exports_the_best_qualifying_trial(tiny, tmp_path):
    _, run_dir = tiny
    complete = [row for row in run_dir.read_trials() if row["status"] == "complete"]
    limit = sorted(row["size_bytes"] for row in complete)[1]  # the two smallest models qualify
    expected = min((row for row in complete if row["size_bytes"] <= limit), key=lambda row: (row["eer"], row["size_bytes"]))
    out = tmp_path / "picked"
    assert main(["export", str(run_dir.path), "--pick", f"min eer where size_bytes <= {limit:.0f}", "--out", str(out)]) == 0
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["source"]["trial"] == expected["trial"] and config["size_bytes"] == expected["size_bytes"]
    assert config["source"]["selection"] == f'--pick "min eer where size_bytes <= {limit:.0f}"'


def test_knee_is_chosen_from_the_completed_trials(tiny):
    config, run_dir = tiny
    rows = run_dir.read_trials()
    complete = [row for row in rows if row["status"] == "complete"]
    row, selection = choose_trial(rows, config, pick="knee")
    assert row["trial"] == complete[knee_index(complete, config.objectives)]["trial"] and selection == '--pick "knee"'


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--trial", "99"], "trial 99: not a completed trial of this run; completed: [0, 1, 2, 3]"),
        (["--trial", str(FAILED_TRIAL)], f"trial {FAILED_TRIAL}: not a completed trial"),
        (["--pick", "min latency"], "selection 'min latency': unknown metric 'latency'"),
        (["--pick", "min eer where size_bytes <= 10"], "no completed trial satisfies size_bytes <= 10"),
    ],
)
def test_bad_choices_exit_2_with_one_line(tiny, capsys, arguments, message):
    _, run_dir = tiny
    assert main(["export", str(run_dir.path), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_non_empty_out_folder_or_missing_run_exits_2(tiny, tmp_path, capsys):
    _, run_dir = tiny
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["export", str(run_dir.path), "--trial", "1", "--out", str(tmp_path / "taken")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--trial", "1"]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size_bytes": 1}, "its kept model packs to {size} bytes but trials.jsonl records size_bytes={recorded}"),
        ({"steps": 5}, "its kept model is of rung 0 (0 fine-tuning steps) but trials.jsonl records 5 steps"),
    ],
)
def test_a_trial_whose_kept_model_is_not_the_one_recorded_is_refused(tiny, tmp_path, capsys, change, message):
    _, run_dir = tiny
    copy = tmp_path / "run"
    shutil.copytree(run_dir.path, copy)
    rows = [json.loads(line) for line in (copy / "trials.jsonl").read_text().splitlines()]
    size = int(rows[1]["size_bytes"])
    rows[1]["size_bytes"] = size + change.get("size_bytes", 0)
    rows[1].update({key: value for key, value in change.items() if key != "size_bytes"})
    (copy / "trials.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["export", str(copy), "--trial", str(rows[1]["trial"]), "--out", str(tmp_path / "bundle")]) == 2
    assert message.format(size=size, recorded=int(rows[1]["size_bytes"])) in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()


def test_exported_onnx_agrees_with_the_bundle_on_an_utterance(tiny, exported):
    import onnxruntime

    config, _ = tiny
    features = VerificationEvaluator().prepare(verification_setup(config)).test_features[0][None]
    session = onnxruntime.InferenceSession(str(exported / ONNX_FILE), providers=["CPUExecutionProvider"])
    (embedding,) = session.run(None, {"features": features.numpy()})
    with torch.no_grad():
        expected = load_bundle(exported).model(features).numpy()
    assert np.allclose(embedding, expected, rtol=1e-4, atol=1e-5)
