"""The task registry: one place that knows what differs between verification and extraction."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evaluators.extraction import ExtractionEvaluator
from evaluators.verification import VerificationEvaluator
from search.config import ConfigError, load_config
from search.tasks import TASKS, UnknownTaskError, get_task

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_holds_both_tasks_under_their_config_names():
    assert set(TASKS) == {"verification", "extraction"}
    assert all(task.name == name for name, task in TASKS.items())
    assert isinstance(get_task("verification").evaluator(), VerificationEvaluator)
    assert isinstance(get_task("extraction").evaluator(), ExtractionEvaluator)


def test_an_unknown_task_is_named_with_the_known_ones_and_cut_when_long():
    with pytest.raises(UnknownTaskError, match=r"task='separation': expected one of \['verification', 'extraction'\]"):
        get_task("separation")
    with pytest.raises(UnknownTaskError) as error:
        get_task("x" * 5000)
    assert len(str(error.value)) < 200


def test_each_task_reports_its_quality_metrics_first_and_the_shared_ones_after():
    verification = get_task("verification").metric_names(["cortex-a72"], ["synthetic", "an4"])
    extraction = get_task("extraction").metric_names(["cortex-a72"], ["synthetic"])
    assert verification[:2] == ["eer", "min_dcf"] and "eer@an4" in verification
    assert extraction[:2] == ["si_sdri", "sdri"] and not any("@synthetic" in name for name in extraction)
    shared = ["size_bytes", "params", "mean_weight_bits", "compression_ratio", "latency_ms", "latency_ms@cortex-a72"]
    assert all(name in verification and name in extraction for name in shared)


def test_the_default_objectives_name_metrics_the_task_reports():
    for task in TASKS.values():
        known = task.metric_names(["cortex-a72"])
        assert [objective.metric for objective in task.default_objectives][0] == task.quality_metrics[0]
        assert all(objective.metric in known for objective in task.default_objectives)


def test_an_extraction_config_resolved_before_the_fidelity_split_still_loads(tmp_path):
    """Earlier versions wrote every fidelity key, verification's included, into extraction runs."""
    path = tmp_path / "old.yaml"
    old_keys = {"crop_frames": 150, "margin": 0.2, "scale": 30.0, "msft": False, "msft_order": "sensitivity",
                "sensitivity_quantizer": "uniform", "sensitivity_bits": 3, "sensitivity_crops": 256}
    path.write_text(yaml.safe_dump({"task": "extraction", "fidelity": {"steps": [0], **old_keys}}))
    config = load_config(path)
    assert type(config.fidelity).__name__ == "FidelityConfig" and not hasattr(config.fidelity, "crop_frames")
    path.write_text(yaml.safe_dump({"task": "extraction", "fidelity": {"steps": [0], **old_keys, "margin": 0.3}}))
    with pytest.raises(ConfigError, match="fidelity.margin: another task's fine-tuning setting"):
        load_config(path)


def _task_name_literals(path: Path) -> list[str]:
    """Comparisons or dict keys with a task name outside the task registry."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(item, ast.Constant) and item.value in TASKS for item in operands):
                found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Dict):
            if any(isinstance(key, ast.Constant) and key.value in TASKS for key in node.keys):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_outside_the_registry_dispatches_on_a_task_name():
    modules = [
        path
        for package in ("search", "spaces", "evaluators", "hwcost")
        for path in (ROOT / package).rglob("*.py")
        if "tasks" not in path.relative_to(ROOT).parts
    ]
    offenders = [place for path in modules for place in _task_name_literals(path)]
    assert offenders == []


def test_importing_the_pareto_module_does_not_import_torch_ray_or_optuna():
    code = "import sys, search.pareto, search; print(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_search_package_still_offers_its_public_names():
    import search

    assert search.load_config is load_config and callable(search.pareto_front)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        search.missing
