"""The resolved run config as typed, frozen dataclasses: everything a result depends on.

Parsing and validation live in `search.config`; this module only holds the shapes, so the task
registry (`search.tasks`), which builds each task's sections, can import them without importing
the parser that asks the tasks for their sections.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from evaluators.data.mixtures import MixtureConfig
from evaluators.data.sources import SYNTHETIC, CorpusConfig, DataConfig, Source
from evaluators.extraction_training import ExtractorTrainingConfig
from evaluators.features import KALDI
from evaluators.fidelity import FidelityConfig
from evaluators.sensitivity_estimators import SensitivityEstimator
from evaluators.verification_fidelity import VerificationFidelity
from evaluators.student_training import DistillationConfig
from evaluators.training import TeacherConfig
from evaluators.utterance_features import FRONTEND_NAMES
from search.config_paths import default_cache_dir
from search.constraints import Constraint
from search.messages import shorten
from search.pareto import Objective
from search.samplers import SAMPLER_NAMES as SAMPLERS
from spaces.space import SpaceConfig

MAX_MEL_BINS = 256
"""Most mel bands a filterbank may have (speaker models use 24 to 80; more bands than FFT bins are empty)."""
KEEP_ARTIFACTS = ("front", "all", "none")
"""`search.keep_artifacts` choices: which trials' packed weights the run directory keeps."""


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file, key and value."""


@dataclass(frozen=True)
class FeatureConfig:
    """The `features:` block: log-mel filterbank settings (the sample rate comes from `data:`).

    `frontend` is `kaldi` (the engine's filterbank with these settings) or the front-end a
    pretrained family was trained on (`wespeaker`, `speechbrain`, `ge2e`), which fixes its own
    bands and frames: `num_mel_bins` must then be its number of bands.
    """

    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    frontend: str = KALDI

    def __post_init__(self) -> None:
        if self.frontend not in FRONTEND_NAMES:
            raise ValueError(f"features.frontend={shorten(self.frontend)!r}: expected one of {list(FRONTEND_NAMES)}")
        if not 8 <= self.num_mel_bins <= MAX_MEL_BINS:
            raise ValueError(f"features.num_mel_bins={self.num_mel_bins}: must be in [8, {MAX_MEL_BINS}]")
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
    retry_interrupted: bool = True
    """On resume, run each trial the stopped driver left unfinished once more, before new proposals."""
    keep_artifacts: str = "front"
    """Which completed trials keep their packed weights in the run directory: `front`, `all` or `none`."""
    sensitivity: SensitivityEstimator | None = None
    """The `search.sensitivity:` block: the estimator (with its settings) of the per-layer damage table the
    `ilp`, `nsga2` and `predictor-screened` samplers read; None: the task's default (`search.sensitivity_tables`)."""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler={shorten(self.sampler)!r}: expected one of {list(SAMPLERS)}")
        for key in ("trials", "population_size", "workers", "cpus_per_trial"):
            if getattr(self, key) < 1:
                raise ValueError(f"search.{key}={getattr(self, key)}: must be >= 1")
        if self.retries < 0:
            raise ValueError(f"search.retries={self.retries}: must be >= 0")
        if self.reduction_factor < 2:
            raise ValueError(f"search.reduction_factor={self.reduction_factor}: must be >= 2")
        if self.keep_artifacts not in KEEP_ARTIFACTS:
            raise ValueError(f"search.keep_artifacts={self.keep_artifacts!r}: expected one of {list(KEEP_ARTIFACTS)}")


RAY_BUILTIN_RESOURCES = ("CPU", "GPU")
"""Resources a Ray task asks for by their own arguments (`num_cpus`, `num_gpus`), not among its `resources`."""


@dataclass(frozen=True)
class MeasuredTarget:
    """A `targets:` entry with `measure: true`: every trial's model is also timed on a Ray node of
    that kind (`search.measured_latency`).

    The profile `name` still prices the model; its `latency_ms@name` becomes the measured time and
    the prediction moves to `predicted_latency_ms@name`, so the two can be compared trial by trial.
    """

    name: str
    """The target profile (a bundled name or a profile file) whose prediction is kept beside the timing."""
    resources: dict[str, float] = field(default_factory=dict)
    """Ray resources the timing node must advertise (`ray start --resources '{"rpi4": 1}'`), held while
    it times; empty: any node with `cpus` free CPUs."""
    cpus: int = 1
    """CPUs of that node the timing holds: onnxruntime runs on one thread, but holding every CPU of the
    node keeps other Ray work off it while it times."""
    repeats: int = 30
    """Least timed runs in each of the timing's rounds (`hwcost.calibration.measure.TimingPlan.min_runs`)."""
    timeout_s: float = 600.0
    """How long a trial waits for its timing, queued behind others' included, before it fails: with no
    node offering `resources` (or none with `cpus` free) a trial fails instead of waiting forever."""

    def __post_init__(self) -> None:
        if not isinstance(self.resources, dict):
            raise ValueError(f"resources={shorten(self.resources)!r}: expected a mapping of Ray resource to amount, e.g. {{rpi4: 1}}")
        for label, amount in self.resources.items():
            if not isinstance(label, str) or not label:
                raise ValueError(f"resources: resource name {shorten(label)!r}: expected a non-empty string")
            if label in RAY_BUILTIN_RESOURCES:
                raise ValueError(f"resources.{label}: Ray's own resource; give the CPUs to hold with cpus")
            number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
            if not number or not math.isfinite(amount) or amount <= 0:
                raise ValueError(f"resources.{label}={shorten(amount)!r}: must be a positive number")
        if self.cpus < 0:
            raise ValueError(f"cpus={self.cpus}: must be >= 0")
        if self.repeats < 1:
            raise ValueError(f"repeats={self.repeats}: must be >= 1")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s={self.timeout_s}: must be > 0")

    def to_config(self) -> dict[str, Any]:
        """The `targets:` entry that parses back to this target."""
        settings = dataclasses.asdict(self)
        return {"name": settings.pop("name"), "measure": True, **settings}


TARGET_ENTRY_FIELDS = ("measured_targets",)
"""`RunConfig` fields a config writes inside its `targets:` entries, not as top-level keys."""


@dataclass(frozen=True)
class RunConfig:
    """A whole run: everything a result depends on, saved resolved in the run directory."""

    name: str = "run"
    task: str = "verification"
    seed: int = 0
    cache_dir: str = field(default_factory=default_cache_dir)
    """Features, corpora and trained teachers, keyed by content (`search.config_paths`)."""
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"family": "resnet"})
    teacher: TeacherConfig | ExtractorTrainingConfig = field(default_factory=TeacherConfig)
    """The task's teacher block (`Task.teacher_config`)."""
    space: SpaceConfig = field(default_factory=SpaceConfig)
    objectives: tuple[Objective, ...] = (
        Objective("eer", "min"),
        Objective("size_bytes", "min"),
        Objective("latency_ms", "min"),
    )
    targets: tuple[str, ...] = ("cortex-a72",)
    """Every target's name (profile name or file), in the config's order: each prices every model."""
    measured_targets: tuple[MeasuredTarget, ...] = ()
    """The targets among `targets` whose latency each trial also times (their `measure: true` entries)."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    constraints: tuple[Constraint, ...] = ()
    fidelity: FidelityConfig = field(default_factory=VerificationFidelity)
    """The `fidelity:` block: the shared ladder, extended by the task (`Task.fidelity_config`)."""
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    """How searched students are trained (init, loss settings); their budget is `fidelity.steps`."""
    mixtures: MixtureConfig | None = None
    """Extraction runs only: how the two-speaker mixtures are made (None for tasks without mixtures)."""

    @property
    def measured_target_names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.measured_targets)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready dict of the resolved config."""
        resolved = dataclasses.asdict(self)
        resolved["data"] = _data_dict(self.data)
        resolved["objectives"] = [o.to_config() for o in self.objectives]
        resolved["space"] = self.space.to_dict()
        resolved["constraints"] = [str(constraint) for constraint in self.constraints]
        measured = {target.name: target.to_config() for target in self.measured_targets}
        resolved["targets"] = [measured.get(name, name) for name in self.targets]
        del resolved["measured_targets"]
        sensitivity = self.search.sensitivity
        resolved["search"]["sensitivity"] = None if sensitivity is None else sensitivity.to_config()
        if self.mixtures is None:
            del resolved["mixtures"]
        return _plain(resolved)


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


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the resolved config dumps as clean YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
