"""Our GE2E encoder and front-end against resemblyzer 0.1.4 itself, on real speech (AN4).

The reference is resemblyzer's own `VoiceEncoder("cpu").embed_utterance(preprocess_wav(path))`;
ours reads the same file with soundfile, runs `evaluators.frontends.ge2e` and the `ge2e` family
loaded from the wheel's `pretrained.pt` through `spaces.checkpoints`.
"""

import importlib.metadata
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from evaluators.frontends import ge2e, ge2e_preprocessing
from spaces.checkpoints import load_checkpoint
from spaces.models import build_model

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    # resemblyzer imports scipy.ndimage.morphology and librosa.load imports audioread's audioop and
    # sunau, all deprecated: warnings of upstream code, not of ours.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

AN4 = Path(__file__).resolve().parents[3] / "shared" / "data" / "an4"
"""Real recorded speech (16 kHz FLAC), shared by the project; absent on some machines."""

UTTERANCES = 5
"""Utterances compared, one per speaker of the test split."""

MIN_COSINE = 0.999


def _an4_files() -> list[Path]:
    speakers = sorted(path for path in (AN4 / "test").iterdir() if path.is_dir()) if (AN4 / "test").is_dir() else []
    return [sorted(speaker.glob("*.flac"))[0] for speaker in speakers[:UTTERANCES] if any(speaker.glob("*.flac"))]


@pytest.fixture(scope="module")
def resemblyzer():
    """resemblyzer's package (with librosa and webrtcvad, which it imports)."""
    for package in ("librosa", "webrtcvad"):
        pytest.importorskip(package)
    return pytest.importorskip("resemblyzer")


@pytest.fixture(scope="module")
def weights_path(resemblyzer) -> Path:
    return Path(importlib.metadata.distribution("resemblyzer").locate_file("resemblyzer/pretrained.pt"))


@pytest.fixture(scope="module")
def encoder(weights_path):
    model = build_model("ge2e")
    model.load_state_dict(load_checkpoint(weights_path, "resemblyzer", model), strict=True)
    return model.eval()


def test_pretrained_weights_load_strictly_in_both_formats(weights_path, encoder):
    loaded = load_checkpoint(weights_path, "auto", encoder)
    assert set(loaded) == set(encoder.state_dict())
    assert "similarity_weight" not in loaded and "linear.weight" in loaded


@pytest.mark.parametrize("num_samples", [0, 1, 159, 160, 12159, 25600, 25601, 33000, 37440, 37441, 48000, 81234])
def test_partial_windows_are_upstreams_slices(resemblyzer, num_samples):
    _, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(num_samples, rate=1.3, min_coverage=0.75)
    assert ge2e.partial_window_starts(num_samples) == [window.start for window in mel_slices]


def test_mel_filterbank_is_librosas(resemblyzer):
    import librosa

    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    assert np.abs(ge2e.mel_filterbank().numpy() - expected).max() <= 1e-6 * expected.max()


@pytest.mark.skipif(not _an4_files(), reason=f"AN4 speech not found under {AN4}")
@pytest.mark.parametrize("path", _an4_files(), ids=lambda path: path.stem)
def test_utterance_embedding_matches_resemblyzer(resemblyzer, encoder, path):
    reference_encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    reference_waveform = resemblyzer.preprocess_wav(path)
    expected = reference_encoder.embed_utterance(reference_waveform)
    waveform, sample_rate = soundfile.read(path, dtype="float32")
    assert sample_rate == ge2e.SAMPLE_RATE
    assert np.array_equal(ge2e_preprocessing.preprocess(waveform), reference_waveform)
    reference_mel = resemblyzer.wav_to_mel_spectrogram(reference_waveform)
    assert np.abs(ge2e.mel_spectrogram(reference_waveform).numpy() - reference_mel).max() <= 1e-5 * reference_mel.max()
    with torch.no_grad():
        embedding = ge2e.utterance_embedding(encoder, ge2e.compute_features(waveform)).numpy()
    cosine = float(embedding @ expected) / (np.linalg.norm(embedding) * np.linalg.norm(expected))
    assert cosine >= MIN_COSINE and math.isclose(np.linalg.norm(embedding), 1.0, rel_tol=1e-5)
