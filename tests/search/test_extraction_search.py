"""Extraction runs: the `task:` switch in the config, the SI-SDRi report, and a real small search."""

import sys

import pytest
import ray.cloudpickle as cloudpickle
import yaml

from search.cli import main
from search.config import ConfigError, load_config
from search.report import front_grid, read_front
from search.run_dir import RunDirectory, RunDirectoryError
from search.tasks import get_task
from evaluators.extraction import ExtractionEvaluator
from evaluators.verification import VerificationEvaluator

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = """
name: tiny-extraction
task: extraction
seed: 1
cache_dir: {cache}
data: {{train_speakers: 3, test_speakers: 3, utterances_per_speaker: 3, min_seconds: 0.4, max_seconds: 0.6}}
mixtures: {{test_mixtures: 3, segment_seconds: 0.3, enrollment_seconds: 0.3}}
model: {{family: extractor, filters: 8, window: 16, bottleneck: 8, hidden: 12, skip_channels: 8, blocks: 2, stacks: 2,
        embedding_dim: 6, voiceprint_blocks: 1}}
teacher: {{steps: 3, batch_size: 2}}
space: {{bits: [3, 8], baselines: [8]}}
search: {{trials: 3, workers: 2, population_size: 2}}
"""


def _write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_extraction_config_defaults_to_8_khz_and_si_sdri_objectives(tmp_path):
    config = load_config(_write(tmp_path, TINY.format(cache=tmp_path / "cache")))
    assert config.task == "extraction" and config.data.sample_rate == 8000
    assert [(o.metric, o.direction) for o in config.objectives] == [("si_sdri", "max"), ("size_bytes", "min"), ("latency_ms", "min")]
    assert isinstance(get_task(config.task).evaluator(), ExtractionEvaluator)
    resolved = config.to_dict()
    assert resolved["mixtures"]["test_mixtures"] == 3 and resolved["teacher"]["speaker_weight"] == 0.5
    again = load_config(_write(tmp_path, yaml.safe_dump(resolved), "resolved.yaml"))
    assert again == config


def test_verification_stays_the_default_task(tmp_path):
    config = load_config(_write(tmp_path, "name: v\n"))
    assert config.task == "verification" and isinstance(get_task(config.task).evaluator(), VerificationEvaluator)
    assert "mixtures" not in config.to_dict()


@pytest.mark.parametrize(
    "text, message",
    [
        ("task: separation\n", r"task='separation': expected one of \['verification', 'extraction'\]"),
        ("mixtures: {test_mixtures: 3}\n", "mixtures: only extraction runs"),
        ("task: extraction\nmodel: {family: resnet}\n", "model.family='resnet': task 'extraction' needs family 'extractor'"),
        ("model: {family: extractor}\n", "task 'verification' needs a speaker-embedding family"),
        ("task: extraction\nobjectives: [[eer, min]]\n", "objectives: unknown metric 'eer'"),
        ("task: extraction\nmixtures: {level_db: [5, -5]}\n", r"mixtures.level_db=\[5.0, -5.0\]: low must not exceed high"),
        ("task: extraction\nteacher: {crop_frames: 100}\n", "teacher: unknown key 'crop_frames'"),
        ("task: extraction\nfidelity: {msft: true}\n", "fidelity.msft: another task's fine-tuning setting; extraction runs do not read it"),
            ("task: extraction\nfidelity: {crop_frames: 50}\n", "fidelity.crop_frames: another task's fine-tuning setting"),
    ],
)
def test_task_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def _extraction_run(path, si_sdri: float) -> RunDirectory:
    path.mkdir()
    run = RunDirectory(path)
    objectives = [{"metric": "si_sdri", "direction": "max"}, {"metric": "size_bytes", "direction": "min"}]
    reference = {"trial": "fp32", "status": "reference", "si_sdri": si_sdri, "sdri": si_sdri + 0.5, "size_bytes": 400_000.0,
                 "compression_ratio": 1.0, "latency_ms": 20.0, "peak_memory_bytes": 2e6}  # fmt: skip
    member = {**reference, "trial": 0, "status": "complete", "bits.encoder": 8, "bits.stack0": 3, "si_sdri": si_sdri - 1.25,
              "size_bytes": 60_000.0, "compression_ratio": 400_000 / 60_000}  # fmt: skip
    run.write_config({"name": "x", "task": "extraction"})
    run.write_reference(reference)
    run.append_trial(member)
    run.write_pareto(objectives, reference, [member])
    run.write_hypervolume([0.5])
    return run


def test_the_report_shows_si_sdri_and_sdri_instead_of_eer(tmp_path, capsys):
    run = _extraction_run(tmp_path / "ext", si_sdri=9.5)
    header, rows = front_grid([read_front(run)])
    assert header == ["trial", "size", "ratio", "SI-SDRi dB", "SDRi dB", "latency ms", "peak MB", "bits"]
    assert rows[0].cells[3:5] == ["9.50", "10.00"] and rows[1].cells[3] == "8.25" and rows[1].cells[-1] == "8/3"
    assert main(["report", str(run.path), "--format", "md"]) == 0
    assert "SI-SDRi dB" in capsys.readouterr().out


def test_extraction_and_verification_runs_are_not_mixed_in_one_table(tmp_path):
    extraction = _extraction_run(tmp_path / "ext", si_sdri=9.0)
    verification = RunDirectory(tmp_path / "ver")
    verification.path.mkdir()
    reference = {"trial": "fp32", "status": "reference", "eer": 0.05, "min_dcf": 0.5, "size_bytes": 1.0,
                 "latency_ms": 1.0, "peak_memory_bytes": 1.0}  # fmt: skip
    verification.write_pareto([{"metric": "eer", "direction": "min"}], reference, [])
    with pytest.raises(RunDirectoryError, match="cannot tabulate extraction and verification runs together"):
        front_grid([read_front(extraction), read_front(verification)])


def test_a_small_extraction_search_runs_end_to_end(tmp_path, ray_session, capsys):
    config_path = _write(tmp_path, TINY.format(cache=tmp_path / "cache"))
    assert main(["run", str(config_path), "--out", str(tmp_path / "results")]) == 0
    (run_path,) = (tmp_path / "results").iterdir()
    run = RunDirectory(run_path)
    rows = run.read_trials()
    reference = run.read_reference()
    assert len(rows) == 3 and "si_sdri" in reference and "eer" not in reference
    complete = [row for row in rows if row["status"] == "complete"]
    assert complete and all(row["size_bytes"] < reference["size_bytes"] and "sdri" in row for row in complete)
    capsys.readouterr()
    assert main(["report", str(run_path), "--format", "md"]) == 0
    assert "SI-SDRi dB" in capsys.readouterr().out
