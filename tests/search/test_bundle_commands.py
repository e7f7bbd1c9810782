"""`search embed` and `search score`: a bundle used from audio files, and the errors a user can fix."""

import json
import shutil

import numpy as np
import pytest

from search.cli import main
from spaces import bundle_runner, load_bundle
from spaces.bundle import CONFIG_FILE, ONNX_FILE
from speech_files import write_speech_files

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return write_speech_files(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def runner_embeddings(bundle, speech):
    """What the bundle's runner computes for each file: the reference of both commands."""
    model = bundle_runner.load(bundle)
    return model, np.stack([model.embed_file(path) for path in speech])


def test_embed_prints_one_json_line_per_file(bundle, speech, runner_embeddings, capsys):
    assert main(["embed", str(bundle), *map(str, speech)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [str(path) for path in speech]
    np.testing.assert_allclose([line["embedding"] for line in lines], runner_embeddings[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("suffix", [".npy", ".json"])
def test_embed_writes_the_embeddings_to_a_file(bundle, speech, runner_embeddings, tmp_path, suffix, capsys):
    out = tmp_path / f"embeddings{suffix}"
    assert main(["embed", str(bundle), *map(str, speech), "--out", str(out)]) == 0
    if suffix == ".npy":
        written = np.load(out)
    else:
        data = json.loads(out.read_text())
        assert data["files"] == [str(path) for path in speech]
        written = np.array(data["embeddings"])
    np.testing.assert_allclose(written, runner_embeddings[1], rtol=1e-6, atol=1e-7)
    assert f"3 embedding(s) of {written.shape[1]} values: {out}" in capsys.readouterr().out


@pytest.mark.parametrize("point", [None, "false_accept_1%"])
def test_score_prints_the_cosine_and_the_decision_at_the_calibrated_threshold(bundle, speech, runner_embeddings, point, capsys):
    model, embeddings = runner_embeddings
    argv = ["score", str(bundle), str(speech[0]), str(speech[2])] + (["--point", point] if point else [])
    assert main(argv) == 0
    score = model.score(embeddings[0], embeddings[2])
    threshold = json.loads((bundle / CONFIG_FILE).read_text())["decision"]["thresholds"][point or "eer"]
    verdict = "same speaker" if score >= threshold else "different speakers"
    assert capsys.readouterr().out.strip() == f"score {score:.4f}, threshold {threshold:.4f} ({point or 'eer'}): {verdict}"


def _one_error_line(capsys) -> str:
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and "Traceback" not in error
    return error


def test_a_missing_or_broken_bundle_is_one_error_line(bundle, speech, tmp_path, capsys):
    assert main(["score", str(tmp_path / "nowhere"), str(speech[0]), str(speech[1])]) == 2
    assert f"{tmp_path / 'nowhere' / CONFIG_FILE}: missing" in _one_error_line(capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_FILE).write_text((bundle / CONFIG_FILE).read_text())
    (broken / ONNX_FILE).write_bytes(b"not a graph")
    assert main(["embed", str(broken), str(speech[0])]) == 2
    assert f"{broken / ONNX_FILE}: cannot be loaded" in _one_error_line(capsys)


def test_a_missing_or_unreadable_audio_file_is_one_error_line(bundle, speech, tmp_path, capsys):
    assert main(["embed", str(bundle), str(tmp_path / "absent.wav")]) == 2
    assert f"{tmp_path / 'absent.wav'}: unreadable audio" in _one_error_line(capsys)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    assert main(["score", str(bundle), str(speech[0]), str(text)]) == 2
    assert f"{text}: unreadable audio" in _one_error_line(capsys)


def test_bad_options_are_one_error_line(bundle, speech, tmp_path, capsys):
    assert main(["embed", str(bundle), str(speech[0]), "--out", str(tmp_path / "embeddings.csv")]) == 2
    assert "expected a file ending in .npy or .json" in _one_error_line(capsys)
    assert main(["score", str(bundle), str(speech[0]), str(speech[2]), "--point", "half"]) == 2
    assert "threshold 'half': this bundle has ['eer', 'false_accept_1%']" in _one_error_line(capsys)


def test_a_bundle_without_thresholds_embeds_but_cannot_decide(bundle, speech, tmp_path, capsys):
    older = tmp_path / "older"
    shutil.copytree(bundle, older)
    config = json.loads((older / CONFIG_FILE).read_text())
    del config["decision"]  # written before thresholds were calibrated
    (older / CONFIG_FILE).write_text(json.dumps(config))
    assert load_bundle(older).config.decision == {}
    assert main(["embed", str(older), str(speech[0])]) == 0
    capsys.readouterr()
    assert main(["score", str(older), str(speech[0]), str(speech[1])]) == 2
    assert "no decision thresholds" in _one_error_line(capsys)
