"""A distilled-student search (student width, taps, weight, sharing and bits as knobs) end to end."""

import pytest

from search.cli import main
from search.artifacts import read_artifact
from search.config import load_config
from search.run_dir import RunDirectory
from search.tasks import get_task

TINY = """
name: tiny-distill
seed: 1
cache_dir: {cache}
data: {{train_speakers: 6, test_speakers: 4, utterances_per_speaker: 4, min_seconds: 1.0, max_seconds: 1.5}}
features: {{num_mel_bins: 24}}
model: {{family: xvector, channels: 16, pooling_channels: 32, embedding_dim: 16}}
teacher: {{steps: 15, batch_size: 8, crop_frames: 80}}
space:
  knobs:
    - {{name: student.width, choices: [0.25, 0.5]}}
    - {{name: student.depth, choices: [0.6, 1.0]}}
    - {{name: distill.taps, choices: [embedding, [frame5, embedding]]}}
    - {{name: distill.mode, choices: [sum, concat]}}
    - {{name: distill.weight, range: {{low: 0.5, high: 2.0}}}}
    - {{name: share, choices: [false, true]}}
    - {{name: bits.all, layers: ["*"], bits: [4, 32]}}
fidelity: {{steps: [2, 4], batch_size: 8, crop_frames: 60, sensitivity_crops: 8}}
search: {{trials: 2, workers: 2, population_size: 4, keep_artifacts: all}}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("distill-search")
    config_path = root / "tiny.yaml"
    config_path.write_text(TINY.format(cache=root / "cache"))
    assert main(["run", str(config_path), "--out", str(root / "results")]) == 0
    (run_path,) = (root / "results").iterdir()
    return load_config(config_path), RunDirectory(run_path)


def test_every_student_trial_completes_smaller_than_the_teacher(finished_run):
    config, run_dir = finished_run
    rows = run_dir.read_trials()
    assert len(rows) == config.search.trials
    complete = [row for row in rows if row["status"] == "complete"]
    assert len(complete) == config.search.trials, [row["error"] for row in rows if row["status"] != "complete"]
    reference = run_dir.read_reference()
    for row in complete:
        assert row["student.width"] in (0.25, 0.5) and row["distill.taps"] in ("embedding", "frame5+embedding")
        assert 0.0 <= row["eer"] <= 1.0 and 0 < row["size_bytes"] < reference["size_bytes"]
        assert row["params"] < reference["params"]


def test_a_student_trials_artifact_rebuilds_the_student(finished_run):
    config, run_dir = finished_run
    for row in run_dir.read_trials():
        artifact = read_artifact(run_dir, row["trial"])
        assert artifact.spec.family == "xvector" and artifact.spec != get_task(config.task).model_spec(config)
        assert artifact.share_repeated_blocks == row["share"]
        assert artifact.rebuild().description.params == row["params"]


def test_the_distillation_block_is_validated_with_the_key_named(tmp_path):
    from search.config import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("distillation: {init: copy}\n")
    with pytest.raises(ConfigError, match="distillation.init='copy': expected one of"):
        load_config(path)
    path.write_text("distillation: {weight: 2}\n")
    with pytest.raises(ConfigError, match="distillation: unknown key 'weight'"):
        load_config(path)
    assert load_config(None).distillation.init == "slice"
