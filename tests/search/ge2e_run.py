"""A tiny GE2E run and its exported bundle, shared by the tests of windowed bundles and of the runner.

A small random encoder is saved as resemblyzer saves its `VoiceEncoder`, loaded as the teacher of
a run on the synthetic corpus read through the ge2e front-end's windows, and trial 0 (every LSTM
matrix and the linear layer at 4 bits) is exported through the CLI once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_run import write_measured_run

_GE2E = """
name: tiny-ge2e
seed: 3
cache_dir: {cache}
data: {{train_speakers: 4, test_speakers: 4, utterances_per_speaker: 3, min_seconds: 1.0, max_seconds: 2.5}}
features: {{frontend: ge2e, num_mel_bins: 40}}
model: {{family: ge2e, hidden_size: 16, embedding_dim: 16, num_layers: 2}}
teacher: {{checkpoint: {checkpoint}, format: resemblyzer}}
space: {{bits: [4, 8]}}
fidelity: {{crop_frames: 100}}
targets: [cortex-a72]
"""

FORGET_BIAS = 4.0
"""Added to the random encoder's forget gates, holding them open as a trained encoder's are: a
random LSTM forgets within a few frames, so windows ending in zero padding embed alike, and
near-tied trial scores would flip the EER check on float rounding."""

_SESSION: dict[str, Path] = {}


def _resemblyzer_checkpoint(path: Path) -> Path:
    """A small random encoder saved as resemblyzer saves its `VoiceEncoder` (upstream `nn.LSTM` names)."""
    torch.manual_seed(0)
    encoder = torch.nn.Module()
    encoder.lstm = torch.nn.LSTM(40, 16, 2, batch_first=True)
    encoder.linear = torch.nn.Linear(16, 16)
    hidden = encoder.lstm.hidden_size
    with torch.no_grad():
        for layer in range(encoder.lstm.num_layers):  # gates stacked as input, forget, cell, output
            getattr(encoder.lstm, f"bias_ih_l{layer}")[hidden : 2 * hidden] += FORGET_BIAS
    loss_terms = {"similarity_weight": torch.tensor([10.0]), "similarity_bias": torch.tensor([-5.0])}
    torch.save({"step": 1, "model_state": {**encoder.state_dict(), **loss_terms}}, path)
    return path


def shared_ge2e_bundle(factory: pytest.TempPathFactory) -> Path:
    """The session's GE2E bundle, exported by the first test module that asks."""
    if "bundle" not in _SESSION:
        from search.cli import main

        root = factory.mktemp("ge2e")
        checkpoint = _resemblyzer_checkpoint(root / "pretrained.pt")
        _, run_dir = write_measured_run(root, _GE2E.format(cache=root / "cache", checkpoint=checkpoint), {0: 4})
        out = root / "bundle"
        assert main(["export", str(run_dir.path), "--trial", "0", "--out", str(out)]) == 0
        _SESSION["bundle"] = out
    return _SESSION["bundle"]
