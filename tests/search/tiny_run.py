"""A small, real run directory built without Ray, for the export and verify tests.

The FP32 reference and every trial are measured exactly as the engine measures them (`prepare`,
`evaluate`, `measure`) and keep their artifacts, so a bundle exported from it is the model measured. Corpus,
model and teacher are the engine tests' tiny ones, so with their `tiny_cache_dir` the tiny
teacher is trained once per test session.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from search.artifacts import TrialArtifact, write_artifact
from search.config import RunConfig, load_config
from search.engine import front_members
from search.run_dir import RunDirectory
from search.tasks import get_task
from search.trial import measure
from tiny_config import tiny_config

TRIAL_BITS = {0: 8, 1: 4, 2: {"bits.stem": 8, "bits.layer1": 4, "bits.layer2": 2, "bits.layer3": 2, "bits.layer4": 4, "bits.embedding": 8}, 3: 2}
"""Trial number -> uniform bits or bits per knob; trial 4 is recorded as failed."""
FAILED_TRIAL = 4
EXPORTED_TRIAL = 2

_SESSION: dict[str, object] = {}
"""The session's tiny run and bundle, shared by every test module that asks for them."""


def shared_tiny_run(factory: pytest.TempPathFactory, cache: Path) -> tuple[RunConfig, RunDirectory]:
    """The session's tiny run, built by the first module that asks."""
    if "run" not in _SESSION:
        _SESSION["run"] = make_tiny_run(factory.mktemp("tiny-run"), cache)
    return _SESSION["run"]


def shared_bundle(factory: pytest.TempPathFactory, cache: Path) -> Path:
    """Trial `EXPORTED_TRIAL` of the session's tiny run, exported once through `search export`."""
    if "bundle" not in _SESSION:
        from search.cli import main

        _, run_dir = shared_tiny_run(factory, cache)
        out = factory.mktemp("bundles") / f"trial-{EXPORTED_TRIAL}"
        assert main(["export", str(run_dir.path), "--trial", str(EXPORTED_TRIAL), "--out", str(out)]) == 0
        _SESSION["bundle"] = out
    return _SESSION["bundle"]


def make_tiny_run(root: Path, cache: Path) -> tuple[RunConfig, RunDirectory]:
    """Write the config to `root/tiny.yaml` and a finished run directory under `root/results`."""
    return write_measured_run(root, tiny_config(cache, "{bits: [2, 4, 8], baselines: [8, 2]}", "targets: [cortex-a72, x86-avx2]\n"), TRIAL_BITS, failed_trial=FAILED_TRIAL)


def write_measured_run(
    root: Path, text: str, trial_bits: Mapping[int, int | Mapping[str, int]], failed_trial: int | None = None
) -> tuple[RunConfig, RunDirectory]:
    """A finished run of config `text` (either task): the reference and one trial per entry of
    `trial_bits` measured as the engine measures them, each with its artifact (as
    `search.keep_artifacts: all` keeps them), then `failed_trial` recorded as failed."""
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "tiny.yaml"
    config_path.write_text(text)
    config = load_config(config_path)
    run_dir = RunDirectory.create(root / "results", config.name)
    run_dir.write_config(config.to_dict())
    task = get_task(config.task)
    evaluator = task.evaluator()
    prepared = evaluator.prepare(task.setup(config))
    fp32 = evaluator.evaluate_reference(prepared)
    reference_size = fp32.metrics["size_bytes"]
    reference = {"trial": "fp32", "status": "reference", **measure(fp32, config.targets, reference_size)}
    run_dir.write_reference(reference)
    last_rung, last_steps = len(config.fidelity.steps) - 1, config.fidelity.steps[-1]
    for number, bits in trial_bits.items():
        candidate = prepared.space.uniform_candidate(bits)
        evaluation = evaluator.evaluate(candidate, prepared)
        metrics = measure(evaluation, config.targets, reference_size)
        write_artifact(run_dir, TrialArtifact.measured(number, last_rung, last_steps, candidate, prepared, evaluation))
        run_dir.append_trial({"trial": number, "status": "complete", **candidate, **metrics, "error": "", "seconds": 1.0})
    if failed_trial is not None:
        run_dir.append_trial({"trial": failed_trial, "status": "failed", **candidate, "error": "ValueError: injected", "seconds": None})
    objectives = [{"metric": o.metric, "direction": o.direction} for o in config.objectives]
    run_dir.write_pareto(objectives, reference, front_members(run_dir.read_trials(), config.objectives))
    return config, run_dir
