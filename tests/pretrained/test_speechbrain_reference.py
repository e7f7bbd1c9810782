"""Our SpeechBrain ECAPA-TDNN and front-end against speechbrain 1.1.2's own code.

speechbrain imports torchaudio, whose wheel does not load beside this torch build; the parts
compared here never call it, so a stub module stands in for it while speechbrain is imported.
"""

import sys
import types

import numpy as np
import pytest
import torch

from evaluators.frontends import speechbrain as frontend
from spaces.checkpoints import load_checkpoint
from spaces.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = dict(channels=[32, 32, 32, 32, 96], attention_channels=16, res2net_scale=4, se_channels=8)
"""A narrow ECAPA-TDNN with the published layout (kernels 5, 3, 3, 3, 1; dilations 1-4)."""

TOLERANCE = 1e-4
"""Largest embedding difference accepted (float32 arithmetic in a different order)."""


@pytest.fixture(scope="module")
def upstream():
    """speechbrain's ECAPA_TDNN, Fbank and InputNormalization, imported with torchaudio stubbed."""
    pytest.importorskip("hyperpyyaml")  # speechbrain's package imports it
    stub = types.ModuleType("torchaudio")
    stub.__version__ = "2.9.0"  # read by speechbrain's backend check; >= 2.9 has no backends to list
    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = stub
    try:
        ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")
        features = pytest.importorskip("speechbrain.lobes.features")
        processing = pytest.importorskip("speechbrain.processing.features")
        yield types.SimpleNamespace(
            ECAPA_TDNN=ecapa.ECAPA_TDNN, Fbank=features.Fbank, InputNormalization=processing.InputNormalization
        )
    finally:
        if saved is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = saved
        # speechbrain leaves lazy modules in sys.modules that raise ImportError (flair, ...) when
        # anything inspects them (Hypothesis scans every module's attributes): forget them all.
        for name in [name for name in sys.modules if name == "speechbrain" or name.startswith("speechbrain.")]:
            del sys.modules[name]


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with random weights and batch-norm statistics, in eval mode (as a trained model runs)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.is_floating_point():
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("global_context", [True, False])
def test_embeddings_equal_upstreams_after_loading_its_checkpoint(upstream, tmp_path, global_context):
    reference = _randomised(upstream.ECAPA_TDNN(24, lin_neurons=16, global_context=global_context, **SMALL))
    path = tmp_path / "embedding_model.ckpt"
    torch.save(reference.state_dict(), path)
    ours = build_model("speechbrain_ecapa", num_mel_bins=24, embedding_dim=16, global_context=global_context, **SMALL)
    ours.load_state_dict(load_checkpoint(path, "speechbrain", ours), strict=True)
    ours.eval()
    features = torch.randn(3, 57, 24, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([1.0, 0.7, 0.45])
    with torch.no_grad():
        assert reference(features).shape == (3, 1, 16)
        assert (reference(features).squeeze(1) - ours(features)).abs().max() <= TOLERANCE
        assert (reference(features, lengths).squeeze(1) - ours(features, lengths)).abs().max() <= TOLERANCE


def test_the_published_size_model_loads_strictly_and_matches(upstream, tmp_path):
    reference = _randomised(upstream.ECAPA_TDNN(80, lin_neurons=192))
    path = tmp_path / "embedding_model.ckpt"
    torch.save(reference.state_dict(), path)
    ours = build_model("speechbrain_ecapa")
    state = load_checkpoint(path, "auto", ours)
    assert "blocks.0.conv.conv.weight" in state and "blocks.1.res2net_block.blocks.0.conv.conv.weight" in state
    ours.load_state_dict(state, strict=True)
    features = torch.randn(2, 150, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(features).squeeze(1)
        assert (expected - ours.eval()(features)).abs().max() <= TOLERANCE * expected.abs().max()


def _waveform(seconds: float = 1.3) -> np.ndarray:
    generator = np.random.default_rng(0)
    time = np.arange(int(16000 * seconds)) / 16000
    tones = sum(np.sin(2 * np.pi * frequency * time) for frequency in (150, 440, 1200, 3100))
    return (0.1 * tones + generator.normal(0, 0.02, len(time))).astype(np.float32)


def test_frontend_equals_fbank_with_sentence_mean_normalisation(upstream):
    waveform = _waveform()
    normalise = upstream.InputNormalization(norm_type="sentence", std_norm=False)
    expected = normalise(upstream.Fbank(n_mels=80)(torch.from_numpy(waveform)[None]), torch.ones(1))[0]
    features = frontend.compute_features(waveform)
    assert features.shape == expected.shape == (1 + len(waveform) // 160, 80)
    assert (features - expected).abs().max() <= TOLERANCE


def test_sentence_normalisation_divides_by_the_std_only_when_asked(upstream):
    """The published recipes set std_norm: False; speechbrain's default would also divide."""
    fbank = upstream.Fbank(n_mels=80)(torch.from_numpy(_waveform())[None])
    default = upstream.InputNormalization(norm_type="sentence")(fbank, torch.ones(1))[0]
    assert (default.std(dim=0, unbiased=False) - 1).abs().max() < 1e-3
    assert (frontend.compute_features(_waveform()).std(dim=0) - 1).abs().max() > 0.1
