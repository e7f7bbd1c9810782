"""The verification evaluator trains on one source and reports every evaluation set's metrics."""

import pytest

from evaluators.verification import VerificationEvaluator
from search.config import load_config
from search.tasks.verification_setup import verification_setup

CONFIG = """
seed: 2
cache_dir: {cache}
data:
  train: {{corpus: synthetic, train_speakers: 4, test_speakers: 3, utterances_per_speaker: 3,
           min_seconds: 0.6, max_seconds: 0.8}}
  eval:
    - {{name: synthetic, corpus: synthetic}}
    - {{name: tones, corpus: folder, path: {tones}}}
features: {{num_mel_bins: 16}}
model: {{family: resnet, base_width: 4, blocks: [1, 1, 1, 1], embedding_dim: 8}}
teacher: {{steps: 3, batch_size: 4, crop_frames: 40}}
"""


@pytest.fixture
def config(tmp_path, write_audio):
    for speaker, frequency in enumerate((150.0, 300.0, 600.0)):
        for utterance in range(3):
            path = tmp_path / "tones" / f"s{speaker}" / f"{utterance}.flac"
            write_audio(path, 0.6, frequency=frequency * (1 + utterance / 50))
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.format(cache=tmp_path / "cache", tones=tmp_path / "tones"))
    return load_config(path)


def test_metrics_are_reported_per_set_and_unsuffixed_for_the_first(config):
    evaluator = VerificationEvaluator()
    prepared = evaluator.prepare(verification_setup(config))
    assert [s.name for s in prepared.eval_sets] == ["synthetic", "tones"]
    assert prepared.eval_sets[0].trials is None and len(prepared.eval_sets[1].trials) == 9 * 8 // 2
    assert prepared.test_features is prepared.eval_sets[0].features
    metrics = evaluator.evaluate_reference(prepared).metrics
    for name in ("synthetic", "tones"):
        assert 0.0 <= metrics[f"eer@{name}"] <= 1.0 and 0.0 <= metrics[f"min_dcf@{name}"] <= 1.0
    assert (metrics["eer"], metrics["min_dcf"]) == (metrics["eer@synthetic"], metrics["min_dcf@synthetic"])
    candidate = prepared.space.uniform_candidate(4)
    quantized = evaluator.evaluate(candidate, prepared).metrics
    assert {"eer@synthetic", "eer@tones"} <= quantized.keys() and quantized["size_bytes"] < metrics["size_bytes"]
