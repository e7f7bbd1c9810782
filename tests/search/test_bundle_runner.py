"""The bundle's runner.py: the package's front-ends reproduced in numpy, and a bundle run without the package.

The oracle is always the package's own path: `evaluators.data.audio.load_audio`, the front-end's
features (`utterance_features`) and the PyTorch model `load_bundle` rebuilds.
"""

import json
import subprocess
import sys
import sysconfig
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from evaluators.data.audio import energy_vad, load_audio
from evaluators.features import FbankConfig
from evaluators.frontends import get_frontend
from evaluators.training import embed_utterances
from evaluators.utterance_features import utterance_features
from search.tasks.frontend_spec import frontend_spec
from spaces import bundle_runner, load_bundle
from spaces.bundle import CONFIG_FILE, RUNNER_FILE, BundleError, read_bundle_config
from speech_files import write_speech_files

pytestmark = pytest.mark.usefixtures("single_thread")

FRONTENDS = {
    "kaldi": FbankConfig(num_mel_bins=24, frame_length_ms=20.0, frame_shift_ms=12.5),
    "wespeaker": FbankConfig(num_mel_bins=80, frontend="wespeaker"),
    "speechbrain": FbankConfig(num_mel_bins=80, frontend="speechbrain"),
    "ge2e": FbankConfig(num_mel_bins=40, frontend="ge2e"),
}
"""Every front-end a bundle can carry; the engine's own with non-default frames."""


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return write_speech_files(tmp_path_factory.mktemp("speech"))


def _windows(fbank: FbankConfig) -> dict | None:
    windows = get_frontend(fbank.frontend).windows if fbank.frontend != "kaldi" else None
    return asdict(windows) if windows is not None else None


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_the_runner_computes_the_features_of_every_front_end(name, speech):
    fbank = FRONTENDS[name]
    spec = frontend_spec(fbank, energy_vad=False)
    for path in speech:
        samples = load_audio(path, fbank.sample_rate)
        expected = utterance_features(samples, fbank).numpy()
        computed = bundle_runner.features(bundle_runner.read_audio(path, spec["audio"]), spec, _windows(fbank))
        assert computed.shape == expected.shape and computed.dtype == np.float32
        scale = np.abs(expected).max()
        np.testing.assert_allclose(computed, expected, rtol=1e-3, atol=1e-4 * scale, err_msg=f"{name}: {path.name}")


def test_the_runner_reads_resamples_and_drops_silence_as_the_package_does(speech):
    spec = frontend_spec(FRONTENDS["kaldi"], energy_vad=True)["audio"]
    for path in speech:
        plain = bundle_runner.read_audio(path, {**spec, "energy_vad": None})
        np.testing.assert_array_equal(plain, load_audio(path, 16000))
        np.testing.assert_array_equal(bundle_runner.read_audio(path, spec), energy_vad(load_audio(path, 16000), 16000))


def test_a_waveform_at_another_rate_or_as_integers_embeds_like_its_file(bundle, speech):
    model = bundle_runner.load(bundle)
    stereo, rate = soundfile.read(speech[1], dtype="int16", always_2d=True)
    assert rate != model.sample_rate and stereo.shape[1] == 2
    np.testing.assert_allclose(model.embed(stereo, rate), model.embed_file(speech[1]), rtol=1e-5, atol=1e-6)


CLEAN_ENV = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
"""No PYTHONPATH, and no __pycache__ written into the shared bundles when runner.py is imported."""

_CLEAN_SCRIPT = """
import importlib, json, sys
import numpy as np

bundle, out, *wavs = sys.argv[1:]
absent = []
for name in ("spaces", "search", "evaluators"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        absent.append(name)
sys.path.insert(0, bundle)
import runner

model = runner.load(bundle)
embeddings = np.stack([model.embed_file(path) for path in wavs])
np.save(out, embeddings)
first, second = embeddings[0], embeddings[1]
print(json.dumps({
    "absent": absent,
    "torch_loaded": "torch" in sys.modules,
    "score": model.score(first, second),
    "accepts": model.accepts(model.score(first, second)),
    "threshold": model.threshold(),
}))
"""


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory):
    """A virtualenv without this package: the project venv's site-packages on its path through a
    .pth line, which Python adds without running the .pth files in that folder, so the editable
    install's import hook (itself a .pth) stays off while numpy, onnxruntime and soundfile load."""
    root = tmp_path_factory.mktemp("clean-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True)
    python = root / "env" / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    Path(site, "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _run_clean(python: Path, bundle: Path, wavs: list[Path], folder: Path) -> tuple[dict, np.ndarray]:
    script, out = folder / "use_runner.py", folder / "embeddings.npy"
    script.write_text(_CLEAN_SCRIPT)
    result = subprocess.run(
        [python, script, bundle, out, *wavs], cwd=folder, capture_output=True, text=True, env=CLEAN_ENV
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), np.load(out)


def _package_embeddings(bundle: Path, wavs: list[Path]) -> np.ndarray:
    """The package's own path: load_audio, the run's front-end, the PyTorch model of load_bundle."""
    loaded = load_bundle(bundle)
    features = loaded.config.features
    fbank = FbankConfig(
        features.num_mel_bins, features.frame_length_ms, features.frame_shift_ms, loaded.config.sample_rate,
        frontend=features.frontend["name"],
    )
    inputs = [utterance_features(load_audio(path, fbank.sample_rate), fbank) for path in wavs]
    with torch.no_grad():
        return embed_utterances(loaded.model, inputs).numpy()


@pytest.mark.parametrize("fixture", ["bundle", "ge2e_bundle"])
def test_the_runner_embeds_like_load_bundle_in_a_virtualenv_without_the_package(fixture, request, clean_python, speech, tmp_path):
    bundle = request.getfixturevalue(fixture)
    assert (bundle / RUNNER_FILE).read_text() == Path(bundle_runner.__file__).read_text()
    outcome, embeddings = _run_clean(clean_python, bundle, speech, tmp_path)
    assert outcome["absent"] == ["spaces", "search", "evaluators"] and not outcome["torch_loaded"]
    expected = _package_embeddings(bundle, speech)
    cosines = np.einsum("ij,ij->i", embeddings, expected) / (np.linalg.norm(embeddings, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() >= 0.999, cosines
    threshold = json.loads((bundle / CONFIG_FILE).read_text())["decision"]["thresholds"]["eer"]
    assert outcome["threshold"] == threshold and outcome["accepts"] == (outcome["score"] >= threshold)


def test_the_bundle_runner_script_prints_a_score_and_a_decision(bundle, clean_python, speech, tmp_path):
    result = subprocess.run(
        [clean_python, bundle / RUNNER_FILE, *speech[:2]], cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV
    )
    assert result.returncode == 0, result.stderr
    model = bundle_runner.load(bundle)
    score = model.score(model.embed_file(speech[0]), model.embed_file(speech[1]))
    verdict = "same speaker" if model.accepts(score) else "different speakers"
    assert result.stdout.strip() == f"score {score:.4f}, threshold {model.threshold():.4f} (eer): {verdict}"


@pytest.mark.parametrize(
    "edit",
    [
        lambda config: {**config, "task": "extraction", "features": None},  # raw audio in: nothing to compute
        lambda config: {**config, "features": {**config["features"], "frontend": None}},  # exported before the spec
    ],
)
def test_a_bundle_without_a_front_end_spec_is_named(bundle, tmp_path, edit):
    copy = tmp_path / "bundle"
    copy.mkdir()
    config = json.loads((bundle / CONFIG_FILE).read_text())
    (copy / CONFIG_FILE).write_text(json.dumps(edit(config)))
    with pytest.raises(bundle_runner.RunnerError, match=r"config.json: no front-end spec \(features.frontend\): not a speaker-verification"):
        bundle_runner.load(copy)


def test_a_front_end_spec_that_is_not_an_object_is_a_bundle_error(bundle, tmp_path):
    config = json.loads((bundle / CONFIG_FILE).read_text())
    config["features"]["frontend"] = "kaldi"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(BundleError, match="features.frontend='kaldi': expected an object"):
        read_bundle_config(tmp_path)


@pytest.mark.parametrize(
    "waveform, message",
    [
        (np.zeros(16000, dtype=np.float32), "all samples are zero"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN or infinite"),
        (np.full(100, 0.1, dtype=np.float32), "audio has 100 samples: need at least 400"),
        (np.ones((2, 3, 4), dtype=np.float32), r"expected \[samples\] or \[samples, channels\]"),
    ],
)
def test_a_waveform_no_front_end_can_read_is_named(bundle, waveform, message):
    with pytest.raises(bundle_runner.RunnerError, match=message):
        bundle_runner.load(bundle).embed(waveform, 16000)
