"""Load and validate a run config (YAML) into typed dataclasses.

Every error names the file and the key, so `search run` can print one line and exit 2 instead of
failing deep inside a Ray worker.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.training import TeacherConfig
from hwcost import available_targets
from search.pareto import Objective
from search.trial import metric_names
from spaces.models import MODEL_FAMILIES
from spaces.space import SpaceConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
SAMPLERS = ("nsga2", "tpe", "random")
_CORPORA = ("synthetic",)

T = TypeVar("T")


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file, key and value."""


@dataclass(frozen=True)
class FeatureConfig:
    """The `features:` block: log-mel filterbank settings (the sample rate comes from `data:`)."""

    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.num_mel_bins < 8:
            raise ValueError(f"features.num_mel_bins={self.num_mel_bins}: need at least 8")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms:
            raise ValueError(f"features.frame_shift_ms={self.frame_shift_ms}: must be in (0, frame_length_ms]")


@dataclass(frozen=True)
class EvaluationConfig:
    """The `evaluation:` block: how candidates are scored."""

    max_trials: int = 200_000

    def __post_init__(self) -> None:
        if self.max_trials < 1:
            raise ValueError(f"evaluation.max_trials={self.max_trials}: must be >= 1")


@dataclass(frozen=True)
class SearchConfig:
    """The `search:` block: budget, sampler and parallelism."""

    trials: int = 20
    sampler: str = "nsga2"
    population_size: int = 8
    workers: int = 2
    cpus_per_trial: int = 1

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler={self.sampler!r}: expected one of {list(SAMPLERS)}")
        for key in ("trials", "population_size", "workers", "cpus_per_trial"):
            if getattr(self, key) < 1:
                raise ValueError(f"search.{key}={getattr(self, key)}: must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: everything a result depends on, saved resolved in the run directory."""

    name: str = "run"
    seed: int = 0
    cache_dir: str = "results/cache"
    data: SyntheticCorpusConfig = field(default_factory=SyntheticCorpusConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"family": "resnet"})
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    objectives: tuple[Objective, ...] = (
        Objective("eer", "min"),
        Objective("size_bytes", "min"),
        Objective("latency_ms", "min"),
    )
    targets: tuple[str, ...] = ("cortex-a72",)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready dict of the resolved config."""
        resolved = dataclasses.asdict(self)
        resolved["data"] = {"corpus": "synthetic", **resolved["data"]}
        resolved["objectives"] = [[o.metric, o.direction] for o in self.objectives]
        return _plain(resolved)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read, validate and resolve a run config (the demo config when `path` is None).

    Args:
        overrides: Dotted keys set after loading, e.g. `{"search.trials": 4}` (CLI flags).
    """
    source = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(source.read_text())
    except OSError as error:
        raise ConfigError(f"{source}: cannot read config: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: malformed YAML: {_one_line(error)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of keys, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if key:
            raw.setdefault(section, {})[key] = value
        else:
            raw[section] = value
    try:
        return _parse(raw)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}: {error}") from None


def _parse(raw: dict[str, Any]) -> RunConfig:
    _check_keys("top level", raw, {f.name for f in dataclasses.fields(RunConfig)})
    data = dict(raw.get("data") or {})
    corpus = data.pop("corpus", "synthetic")
    if corpus not in _CORPORA:
        raise ValueError(f"data.corpus={corpus!r}: expected one of {list(_CORPORA)}")
    model = dict(raw.get("model") or {"family": "resnet"})
    if model.get("family") not in MODEL_FAMILIES:
        raise ValueError(f"model.family={model.get('family')!r}: expected one of {sorted(MODEL_FAMILIES)}")
    targets = tuple(raw.get("targets") or ("cortex-a72",))
    unknown_targets = sorted(set(targets) - set(available_targets()))
    if unknown_targets:
        raise ValueError(f"targets: unknown target {unknown_targets[0]!r}; available: {available_targets()}")
    objectives = tuple(Objective.parse(item) for item in raw.get("objectives") or RunConfig.objectives)
    if not objectives:
        raise ValueError("objectives: need at least one")
    known = metric_names(targets)
    for objective in objectives:
        if objective.metric not in known:
            raise ValueError(f"objectives: unknown metric {objective.metric!r}; known: {known}")
    name = str(raw.get("name", "run"))
    if not name or "/" in name:
        raise ValueError(f"name={name!r}: must be a non-empty folder name")
    return RunConfig(
        name=name,
        seed=int(raw.get("seed", 0)),
        cache_dir=str(raw.get("cache_dir", RunConfig.cache_dir)),
        data=_section(SyntheticCorpusConfig, "data", data),
        features=_section(FeatureConfig, "features", raw.get("features")),
        model=model,
        teacher=_section(TeacherConfig, "teacher", raw.get("teacher")),
        space=_section(SpaceConfig, "space", raw.get("space")),
        objectives=objectives,
        targets=targets,
        evaluation=_section(EvaluationConfig, "evaluation", raw.get("evaluation")),
        search=_section(SearchConfig, "search", raw.get("search")),
    )


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
    """Scalars must have their field's type (YAML `4` is accepted for a float, never `"4"`)."""
    if expected is bool or expected is int:
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is str:
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise ValueError(f"{key}={value!r}: expected {expected.__name__}")


def _check_keys(section: str, block: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ValueError(f"{section}: unknown key {unknown[0]!r}; allowed keys: {sorted(allowed)}")


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the resolved config dumps as clean YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
