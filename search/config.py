"""Load and validate a run config (YAML) into typed dataclasses.

Every error names the file and the key, so `search run` can print one line and exit 2 instead of
failing deep inside a Ray worker.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from evaluators.data.mixtures import MixtureConfig
from evaluators.data.sources import SYNTHETIC, CorpusConfig, DataConfig, EvalSetConfig, Source
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.extraction_training import ExtractorTrainingConfig
from evaluators.finetune import FidelityConfig
from evaluators.student_training import DistillationConfig
from evaluators.training import TeacherConfig
from hwcost import available_targets
from search.constraints import Constraint, parse_constraints
from search.pareto import Objective
from search.trial import metric_names, model_spec_for
from spaces.models import MODEL_FAMILIES
from spaces.space import SearchSpace, SpaceConfig, parse_space_config

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
SAMPLERS = ("nsga2", "tpe", "gp", "random", "uniform-grid", "sensitivity-greedy")

TASKS = ("verification", "extraction")
"""What a run compresses: a speaker-embedding model (EER) or a target-speaker extractor (SI-SDRi)."""
EXTRACTION_FAMILY = "extractor"
EXTRACTION_SAMPLE_RATE = 8000
"""Extraction runs default to 8 kHz audio (the rate of WSJ0-2mix)."""
EXTRACTION_OBJECTIVES = (Objective("si_sdri", "max"), Objective("size_bytes", "min"), Objective("latency_ms", "min"))

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
    retries: int = 1
    """Extra attempts for a trial that raises, reports NaN or loses its worker process."""
    storage: str = ""
    """Ray Tune's experiment folder, reachable from every node (path or URI); empty: RUN/ray."""
    reduction_factor: int = 3
    """Successive halving over the fidelity ladder: about 1 in this many trials reaches the next rung."""
    stopped_in_front: bool = False
    """Whether trials stopped below the ladder's last rung may enter the front (by their last rung)."""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler={self.sampler!r}: expected one of {list(SAMPLERS)}")
        for key in ("trials", "population_size", "workers", "cpus_per_trial"):
            if getattr(self, key) < 1:
                raise ValueError(f"search.{key}={getattr(self, key)}: must be >= 1")
        if self.retries < 0:
            raise ValueError(f"search.retries={self.retries}: must be >= 0")
        if self.reduction_factor < 2:
            raise ValueError(f"search.reduction_factor={self.reduction_factor}: must be >= 2")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: everything a result depends on, saved resolved in the run directory."""

    name: str = "run"
    task: str = "verification"
    seed: int = 0
    cache_dir: str = "results/cache"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"family": "resnet"})
    teacher: TeacherConfig | ExtractorTrainingConfig = field(default_factory=TeacherConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    objectives: tuple[Objective, ...] = (
        Objective("eer", "min"),
        Objective("size_bytes", "min"),
        Objective("latency_ms", "min"),
    )
    targets: tuple[str, ...] = ("cortex-a72",)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    constraints: tuple[Constraint, ...] = ()
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    """How searched students are trained (init, loss settings); their budget is `fidelity.steps`."""
    mixtures: MixtureConfig = field(default_factory=MixtureConfig)
    """Extraction runs only: how the two-speaker mixtures are made."""

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready dict of the resolved config."""
        resolved = dataclasses.asdict(self)
        resolved["data"] = _data_dict(self.data)
        resolved["objectives"] = [[o.metric, o.direction] for o in self.objectives]
        resolved["space"] = self.space.to_dict()
        resolved["constraints"] = [str(constraint) for constraint in self.constraints]
        if self.task != "extraction":
            del resolved["mixtures"]
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
    task = raw.get("task", "verification")
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {list(TASKS)}")
    extraction = task == "extraction"
    if not extraction and "mixtures" in raw:
        raise ValueError("mixtures: only extraction runs (task: extraction) mix speakers")
    data_block = raw.get("data")
    if extraction and (data_block is None or isinstance(data_block, dict)):
        data_block = {"sample_rate": EXTRACTION_SAMPLE_RATE, **(data_block or {})}
    data = _data(data_block)
    model = dict(raw.get("model") or {"family": EXTRACTION_FAMILY if extraction else "resnet"})
    if model.get("family") not in MODEL_FAMILIES:
        raise ValueError(f"model.family={model.get('family')!r}: expected one of {sorted(MODEL_FAMILIES)}")
    if extraction != (model["family"] == EXTRACTION_FAMILY):
        needed = f"family {EXTRACTION_FAMILY!r}" if extraction else f"a speaker-embedding family, not {EXTRACTION_FAMILY!r}"
        raise ValueError(f"model.family={model['family']!r}: task {task!r} needs {needed}")
    targets = tuple(raw.get("targets") or ("cortex-a72",))
    unknown_targets = sorted(set(targets) - set(available_targets()))
    if unknown_targets:
        raise ValueError(f"targets: unknown target {unknown_targets[0]!r}; available: {available_targets()}")
    default_objectives = EXTRACTION_OBJECTIVES if extraction else RunConfig.objectives
    objectives = tuple(Objective.parse(item) for item in raw.get("objectives") or default_objectives)
    if not objectives:
        raise ValueError("objectives: need at least one")
    known = metric_names(targets, () if extraction else data.eval_names, task)
    for objective in objectives:
        if objective.metric not in known:
            raise ValueError(f"objectives: unknown metric {objective.metric!r}; known: {known}")
    name = str(raw.get("name", "run"))
    if not name or "/" in name:
        raise ValueError(f"name={name!r}: must be a non-empty folder name")
    config = RunConfig(
        name=name,
        task=task,
        seed=int(raw.get("seed", 0)),
        cache_dir=str(raw.get("cache_dir", RunConfig.cache_dir)),
        data=data,
        features=_section(FeatureConfig, "features", raw.get("features")),
        model=model,
        teacher=_section(ExtractorTrainingConfig if extraction else TeacherConfig, "teacher", raw.get("teacher")),
        space=parse_space_config(raw.get("space")),
        objectives=objectives,
        targets=targets,
        evaluation=_section(EvaluationConfig, "evaluation", raw.get("evaluation")),
        search=_section(SearchConfig, "search", raw.get("search")),
        constraints=parse_constraints(raw.get("constraints") or (), known),
        fidelity=_section(FidelityConfig, "fidelity", raw.get("fidelity")),
        distillation=_section(DistillationConfig, "distillation", raw.get("distillation")),
        mixtures=_section(MixtureConfig, "mixtures", raw.get("mixtures")),
    )
    if extraction and config.fidelity.msft:
        raise ValueError("fidelity.msft: multi-stage fine-tuning is not implemented for extraction runs")
    _check_space_fits_model(config)
    return config


def _check_space_fits_model(config: RunConfig) -> None:
    """Knobs name layers, groups and taps of the model: check them now, not after teacher training."""
    if config.space.knobs:
        SearchSpace.for_model(config.space, model_spec_for(config))


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


def _data_dict(data: DataConfig) -> dict[str, Any]:
    """The `data:` block as YAML: in the one-corpus form when it is one, so old configs read the same."""
    if data.is_synthetic_only:
        return {"corpus": SYNTHETIC, **dataclasses.asdict(data.train)}
    return {
        "sample_rate": data.sample_rate,
        "train": _source_dict(data.train),
        "eval": [{"name": eval_set.name, **_source_dict(eval_set.source)} for eval_set in data.eval],
    }


def _source_dict(source: Source) -> dict[str, Any]:
    settings = dataclasses.asdict(source)
    return settings if isinstance(source, CorpusConfig) else {"corpus": SYNTHETIC, **settings}


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
