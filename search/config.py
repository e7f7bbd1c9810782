"""Load and validate a run config (YAML) into typed dataclasses.

Every error names the file and the key, so `search run` can print one line and exit 2 instead of
failing deep inside a Ray worker.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from evaluators.data.sources import SYNTHETIC, CorpusConfig, DataConfig, EvalSetConfig, Source
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.fidelity import FidelityConfig
from evaluators.sensitivity_estimators import ESTIMATORS, SensitivityEstimator
from evaluators.student_training import DistillationConfig
from hwcost import target_error
from search.config_paths import default_cache_dir, resolve_paths
from search.constraints import parse_constraints
from search.messages import shorten
from search.overrides import merged, nested
from search.pareto import Objective
from search.ready_configs import config_source, ready_config
from search.run_config import (
    SAMPLERS,
    TARGET_ENTRY_FIELDS,
    ConfigError,
    EvaluationConfig,
    FeatureConfig,
    MeasuredTarget,
    RunConfig,
    SearchConfig,
)
from search.sensitivity_tables import check_estimator, default_estimator
from search.tasks import TASKS, Task, get_task
from spaces.checkpoints import CheckpointError, load_checkpoint, resolve_checkpoint_path
from spaces.models import MODEL_FAMILIES
from spaces.space import SearchSpace, parse_space_config

DEFAULT_CONFIG = ready_config("demo")

T = TypeVar("T")
_FIDELITY_DEFAULTS = {
    f.name: f.default for task in TASKS.values() for f in dataclasses.fields(task.fidelity_config)
}


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read, validate and resolve a run config (the demo config when `path` is None).

    Relative paths in the file resolve against its folder, those in `overrides` against the
    working directory (`search.config_paths`); the config returned holds absolute paths.

    Args:
        path: A config file, or the name of a ready config (`demo`) when no such file exists.
        overrides: Dotted keys set after loading, e.g. `{"search.trials": 4}` (`--set`, CLI flags).
    """
    source = config_source(path) if path is not None else DEFAULT_CONFIG
    try:
        text = source.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder; give a config file (YAML)") from None
    except OSError as error:
        raise ConfigError(f"{source}: cannot read config: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not a UTF-8 text file (byte {error.start}); save the config as UTF-8 YAML") from None
    if "\x00" in text:
        raise ConfigError(f"{source}: contains NUL bytes; not a YAML config")
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: malformed YAML: {shorten(_one_line(error), 300)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of keys, got {type(raw).__name__}")
    raw = resolve_paths(raw, source.resolve().parent)
    if overrides:
        raw = merged(raw, resolve_paths(nested(overrides), Path.cwd()))
    try:
        return _parse(raw)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}{_overridden(str(error), overrides or {})}: {error}") from None


def _overridden(message: str, overrides: Mapping[str, Any]) -> str:
    """` (--set KEY=VALUE)` when the error is about a key set on the command line, so the user
    looks there rather than in the file."""
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        if message.startswith(key) or (section and message.startswith(f"{section}:") and repr(leaf) in message):
            return f" (--set {key}={shorten(value)})"
    return ""


def _parse(raw: dict[str, Any]) -> RunConfig:
    task_name = raw.get("task", "verification")
    _check_type("task", task_name, str)
    task = get_task(task_name)
    _check_top_level_keys(raw, task)
    data_block = raw.get("data")
    if task.default_sample_rate is not None and (data_block is None or isinstance(data_block, dict)):
        data_block = {"sample_rate": task.default_sample_rate, **(data_block or {})}
    data = _data(data_block)
    model = _model(raw.get("model"), task)
    targets, measured_targets = _targets(raw.get("targets", ["cortex-a72"]))
    objectives = _objectives(raw.get("objectives", task.default_objectives))
    known = task.metric_names(targets, task.eval_set_names(data), [target.name for target in measured_targets])
    for objective in objectives:
        if objective.metric not in known:
            raise ValueError(f"objectives: unknown metric {objective.metric!r}; known: {known}")
    name = _run_name(raw.get("name", "run"))
    seed = raw.get("seed", 0)
    _check_type("seed", seed, int)
    cache_dir = raw.get("cache_dir", default_cache_dir())
    _check_type("cache_dir", cache_dir, str)
    if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise ValueError(f"cache_dir={shorten(cache_dir)!r}: is a file; the cache needs a folder")
    sections = {key: _section(cls, key, raw.get(key)) for key, cls in task.sections.items()}
    teacher = _section(task.teacher_config, "teacher", raw.get("teacher"))
    config = RunConfig(
        name=name,
        task=task.name,
        seed=seed,
        cache_dir=cache_dir,
        data=data,
        features=_section(FeatureConfig, "features", raw.get("features")),
        model=model,
        teacher=teacher,
        space=parse_space_config(raw.get("space")),
        objectives=objectives,
        targets=targets,
        measured_targets=measured_targets,
        evaluation=_section(EvaluationConfig, "evaluation", raw.get("evaluation")),
        search=_search(raw.get("search"), task),
        constraints=parse_constraints(raw.get("constraints") or (), known),
        fidelity=_fidelity(task, raw.get("fidelity"), task.fidelity_defaults(teacher)),
        distillation=_section(DistillationConfig, "distillation", raw.get("distillation")),
        **sections,
    )
    task.validate(config)
    _check_model_builds(config)
    _check_space_fits_model(config)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shorten(key)!r} (line {key_node.start_mark.line + 1})", key_node.start_mark
                )
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


MAX_NAME_LENGTH = 100
"""Longest run name: it becomes a folder name with a timestamp appended."""


def _run_name(name: Any) -> str:
    _check_type("name", name, str)
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise ValueError(f"name={shorten(name)!r}: must be a non-empty folder name without '/'")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name={shorten(name)!r}: {len(name)} characters; at most {MAX_NAME_LENGTH}")
    return name


def _model(block: Any, task: Task) -> dict[str, Any]:
    """The `model:` block: a family (the task's default when absent) and its keyword arguments."""
    if block is None:
        return {"family": task.default_family}
    if not isinstance(block, dict):
        raise ValueError(f"model: must be a mapping with a family, e.g. {{family: {task.default_family}}}; got {shorten(block)!r}")
    model = {"family": task.default_family, **block}
    if model["family"] not in MODEL_FAMILIES:
        raise ValueError(f"model.family={shorten(model['family'])!r}: expected one of {sorted(MODEL_FAMILIES)}")
    task.check_family(model["family"])
    return model


def _check_model_builds(config: RunConfig) -> None:
    """Model arguments are checked against the family now, not when the teacher starts training;
    a teacher checkpoint is loaded and matched against the model now, not after data preparation."""
    spec = get_task(config.task).model_spec(config)
    try:
        model = spec.build()
    except (TypeError, ValueError, RuntimeError) as error:
        message = shorten(_one_line(error), 300)
        raise ValueError(message if message.startswith("model") else f"model ({spec.family}): {message}") from None
    checkpoint = getattr(config.teacher, "checkpoint", None)
    if checkpoint is not None:
        try:
            load_checkpoint(resolve_checkpoint_path(checkpoint), config.teacher.format, model)
        except CheckpointError as error:
            raise ValueError(f"teacher.{error}") from None


def _targets(value: Any) -> tuple[tuple[str, ...], tuple[MeasuredTarget, ...]]:
    """The `targets:` list: every target's name, and the settings of those timed on a Ray node.

    An entry is a target name (a bundled profile or a profile file), or a mapping with its `name`
    and, to time it in the loop, `measure: true` with the `MeasuredTarget` settings.
    """
    if not isinstance(value, list) or not all(isinstance(item, (str, dict)) for item in value):
        raise ValueError(
            f"targets={shorten(value)!r}: expected a list of names, e.g. [cortex-a72], or of mappings, "
            "e.g. [{name: cortex-a72, measure: true, resources: {rpi4: 1}}]"
        )
    if not value:
        raise ValueError("targets: need at least one target CPU")
    names, measured = [], []
    for index, entry in enumerate(value):
        target = _target_entry(f"targets[{index}]", entry) if isinstance(entry, dict) else entry
        name = target.name if isinstance(target, MeasuredTarget) else target
        problem = target_error(name)  # a bundled target name or a profile file
        if problem is not None:
            raise ValueError(f"targets: {problem}")
        if name in names:
            raise ValueError(f"targets: {shorten(name)!r} is named more than once; each target's metrics are reported once")
        names.append(name)
        if isinstance(target, MeasuredTarget):
            measured.append(target)
    return tuple(names), tuple(measured)


def _target_entry(where: str, entry: dict[str, Any]) -> str | MeasuredTarget:
    """One mapping of `targets:`: its name alone, or the target to time with `measure: true`."""
    _check_keys(where, entry, {"measure", *(f.name for f in dataclasses.fields(MeasuredTarget))})
    if "name" not in entry:
        raise ValueError(f"{where}: needs a name (a target such as cortex-a72, or a profile file)")
    _check_type(f"{where}.name", entry["name"], str)
    measure = entry.get("measure", False)
    _check_type(f"{where}.measure", measure, bool)
    settings = {key: value for key, value in entry.items() if key != "measure"}
    if not measure:
        unread = sorted(set(settings) - {"name"})
        if unread:
            raise ValueError(f"{where}.{unread[0]}: read only with measure: true (the target is priced, not timed)")
        return entry["name"]
    try:
        return _section(MeasuredTarget, where, settings)
    except ValueError as error:  # a setting out of range names itself; the entry is added here
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where}.{message}") from None


def _objectives(items: Any) -> tuple[Objective, ...]:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"objectives={shorten(items)!r}: need a non-empty list of [metric, min|max] pairs")
    objectives = tuple(Objective.parse(item) for item in items)
    metrics = [objective.metric for objective in objectives]
    repeated = sorted({metric for metric in metrics if metrics.count(metric) > 1})
    if repeated:
        raise ValueError(f"objectives: {repeated[0]!r} is named more than once; each metric may be one objective")
    return objectives


def _search(block: Any, task: Task) -> SearchConfig:
    """The `search:` block; its `sensitivity:` sub-block is resolved to the estimator it selects."""
    nested = block.get("sensitivity") if isinstance(block, dict) else None
    rest = {key: value for key, value in block.items() if key != "sensitivity"} if isinstance(block, dict) else block
    return dataclasses.replace(_section(SearchConfig, "search", rest), sensitivity=_sensitivity(nested, task))


def _sensitivity(block: Any, task: Task) -> SensitivityEstimator:
    """The `search.sensitivity:` block: `estimator` (the task's default when absent) and that estimator's settings.

    Resolved to the estimator with every setting, so the saved config says which table the run read.
    """
    key = "search.sensitivity"
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ValueError(f"{key}: must be a mapping such as {{estimator: hessian, probes: 8}}, got {shorten(block)!r}")
    name = block.get("estimator", default_estimator(task.name))
    _check_type(f"{key}.estimator", name, str)
    if name not in ESTIMATORS:
        raise ValueError(f"{key}.estimator={shorten(name)!r}: expected one of {list(ESTIMATORS)}")
    estimator_class = type(ESTIMATORS[name])
    _check_keys(key, block, {"estimator", *(field.name for field in dataclasses.fields(estimator_class))})
    try:
        estimator = _section(estimator_class, key, {k: v for k, v in block.items() if k != "estimator"})
    except ValueError as error:  # a setting out of range names itself; the block is added here
        message = str(error)
        raise ValueError(message if message.startswith(key) else f"{key}.{message}") from None
    try:
        check_estimator(task.name, estimator)
    except ValueError as error:
        raise ValueError(f"{key}.estimator={name!r}: {error}") from None
    return estimator


def _check_top_level_keys(raw: dict[str, Any], task: Task) -> None:
    """The run config's own blocks and the task's extra ones; another task's block names that task."""
    for other in TASKS.values():
        for key in set(other.sections) - set(task.sections):
            if key in raw:
                raise ValueError(f"{key}: only {other.name} runs (task: {other.name}) read this block")
    _check_keys("top level", raw, {f.name for f in dataclasses.fields(RunConfig)} - set(TARGET_ENTRY_FIELDS))


def _fidelity(task: Task, block: Any, defaults: Mapping[str, Any]) -> FidelityConfig:
    """The `fidelity:` block as the task's class over `defaults`; keys only another task reads are named as such.

    Configs resolved by versions that had one fidelity class for both tasks list every key; those
    keys are accepted at their defaults, so earlier run directories still load.
    """
    cls = task.fidelity_config
    if isinstance(block, dict):
        foreign = {
            key: value
            for key, value in block.items()
            if key not in {f.name for f in dataclasses.fields(cls)} and key in _FIDELITY_DEFAULTS
        }
        for key, value in foreign.items():
            if value != _FIDELITY_DEFAULTS[key]:
                raise ValueError(f"fidelity.{key}: another task's fine-tuning setting; {task.name} runs do not read it")
        block = {key: value for key, value in block.items() if key not in foreign}
    if block is None or isinstance(block, dict):
        block = {**defaults, **(block or {})}
    return _section(cls, "fidelity", block)


def _check_space_fits_model(config: RunConfig) -> None:
    """Knobs name layers, groups and taps of the model: check them now, not after teacher training."""
    if config.space.knobs:
        SearchSpace.for_model(config.space, get_task(config.task).model_spec(config))


def _data(block: Any) -> DataConfig:
    """The `data:` block: one synthetic corpus (`corpus: synthetic` and its settings), or a
    `train:` source and named `eval:` sources (`sample_rate` for all of them)."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ValueError(f"data: must be a mapping, got {type(block).__name__}")
    if "train" not in block and "eval" not in block:
        corpus = block.get("corpus", SYNTHETIC)
        if corpus != SYNTHETIC:
            raise ValueError(f"data.corpus={corpus!r}: name corpora on disk under data.train and data.eval")
        return DataConfig.synthetic(_source("data", block, {}))
    _check_keys("data", block, {"sample_rate", "train", "eval"})
    sample_rate = block.get("sample_rate", DataConfig.sample_rate)
    _check_type("data.sample_rate", sample_rate, int)
    train = _source("data.train", block.get("train") or {}, {"sample_rate": sample_rate})
    # A synthetic evaluation set evaluates the test speakers of the synthetic training corpus
    # unless it says otherwise.
    inherited = dataclasses.asdict(train) if isinstance(train, SyntheticCorpusConfig) else {"sample_rate": sample_rate}
    entries = block.get("eval")
    if not isinstance(entries, list) or not entries:
        raise ValueError("data.eval: need a list of evaluation sets, each a mapping with a name")
    eval_sets = []
    for index, entry in enumerate(entries):
        where = f"data.eval[{index}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where}: must be a mapping with a name")
        source = _source(where, {key: value for key, value in entry.items() if key != "name"}, inherited)
        try:
            eval_sets.append(EvalSetConfig(entry["name"], source))
        except ValueError as error:
            raise ValueError(f"{where}.{error}") from None
    try:
        return DataConfig(train=train, eval=tuple(eval_sets), sample_rate=sample_rate)
    except ValueError as error:
        raise ValueError(f"data.{error}") from None


def _source(name: str, block: Any, synthetic_defaults: dict[str, Any]) -> Source:
    """A source block: `corpus: synthetic` (default) with corpus settings, or a corpus on disk."""
    if not isinstance(block, dict):
        raise ValueError(f"{name}: must be a mapping, got {type(block).__name__}")
    settings = {key: value for key, value in block.items() if key != "corpus"}
    corpus = block.get("corpus", SYNTHETIC)
    if corpus == SYNTHETIC:
        return _section(SyntheticCorpusConfig, name, {**synthetic_defaults, **settings})
    try:
        return _section(CorpusConfig, name, {"corpus": corpus, **settings})
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(name) else f"{name}.{message}") from None


def _section(cls: type[T], name: str, block: Any) -> T:
    """Build dataclass `cls` from a YAML block, rejecting unknown keys by name."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ValueError(f"{name}: must be a mapping, got {type(block).__name__}")
    _check_keys(name, block, {f.name for f in dataclasses.fields(cls)})
    hints = typing.get_type_hints(cls)
    for key, value in block.items():
        _check_type(f"{name}.{key}", value, hints[key])
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in block.items()}
    return cls(**converted)


def _check_type(key: str, value: Any, expected: Any) -> None:
    """Scalars must have their field's type (YAML `4` is accepted for a float, never `"4"`); optional ones may be null."""
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(expected) if option is not type(None)]
        if value is None and len(options) < len(typing.get_args(expected)):
            return
        expected = options[0] if len(options) == 1 else None
    if expected is bool or expected is int:
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ValueError(f"{key}={value!r}: expected a finite number")
    elif expected is str:
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise ValueError(f"{key}={shorten(value)!r}: expected {expected.__name__}")


def _check_keys(section: str, block: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted((set(block) - allowed), key=str)
    if unknown:
        raise ValueError(f"{section}: unknown key {shorten(unknown[0])!r}; allowed keys: {sorted(allowed)}")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


__all__ = ["DEFAULT_CONFIG", "SAMPLERS", "ConfigError", "RunConfig", "load_config"]
