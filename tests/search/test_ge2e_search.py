"""A Ray search over the pretrained GE2E encoder's LSTM gate matrices, fine-tuned without labels."""

import json

import pytest

from search.config import load_config
from search.engine import run_search
from search.run_dir import RunDirectory

pytest.importorskip("resemblyzer", reason="the GE2E weights ship in the resemblyzer wheel")
pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = """
name: ge2e-tiny
seed: 3
cache_dir: {cache}
data: {{train_speakers: 4, test_speakers: 4, utterances_per_speaker: 3, min_seconds: 1.0, max_seconds: 2.0}}
features: {{frontend: ge2e, num_mel_bins: 40}}
model: {{family: ge2e}}
teacher: {{checkpoint: "package:resemblyzer/pretrained.pt", format: resemblyzer}}
space:
  knobs:
    - {{name: bits, groups: [lstm.l0, lstm.l1, lstm.l2], granularity: stage, bits: [3, 8]}}
    - {{name: bits.linear, groups: [linear], bits: [4, 8]}}
fidelity: {{steps: [2], batch_size: 4, msft: true, sensitivity_crops: 8}}
objectives: [[eer, min], [size_bytes, min]]
targets: [cortex-a72]
search: {{trials: 3, workers: 2}}
"""


def test_a_search_over_ge2e_gate_matrices_fine_tunes_them_without_labels(tmp_path, ray_session):
    path = tmp_path / "ge2e.yaml"
    path.write_text(CONFIG.format(cache=tmp_path / "cache"))
    config = load_config(path)
    assert config.fidelity.classification_weight == 0.0  # a loaded teacher fine-tunes on its own embeddings
    run = RunDirectory.create(tmp_path / "results", config.name)
    outcome = run_search(config, run)
    assert len(outcome.trials) == 3 and all(row["status"] == "complete" for row in outcome.trials)
    assert all(row["steps"] == 2 for row in outcome.trials)  # quantization-aware, MSFT stage by stage
    knobs = {"bits.lstm.l0", "bits.lstm.l1", "bits.lstm.l2", "bits.linear"}
    assert all(knobs <= set(row) for row in outcome.trials)
    reference = json.loads((run.path / "reference.json").read_text())
    for row in outcome.trials:
        bits = [row[f"bits.lstm.l{index}"] for index in range(3)] + [row["bits.linear"]]
        assert row["size_bytes"] < reference["size_bytes"]
        assert min(bits) <= row["mean_weight_bits"] <= max(bits)
    assert list((tmp_path / "cache").glob("sensitivities-*")) and not list((tmp_path / "cache").glob("centroids-*"))
