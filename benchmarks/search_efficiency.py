"""Search efficiency of the samplers on per-layer spaces: hypervolume against the number of trials.

Every sampler of the engine (`search.samplers.build_sampler`, the same objects `search run`
uses, given the same ILP problem, `search.sensitivity_tables.AllocationSource`) proposes
candidates of each benchmarked space for `--trials` trials and each of `--seeds`. A space is a
ready config at some granularity (`SPACES`): on per-layer spaces nearly every trial is a new
evaluation, random search is hopeless, and mixed precision pays. The samplers start without the
config's uniform baselines, which the engine enqueues before any sampler and which would hand
every sampler most of the hypervolume in its first trials (`--baselines` does as the engine
does); the warm-started samplers still start from their warm starts, as in the engine: nsga2
from every uniform width of the space and the ILP's mixed rivals of each (the baselines are
among them), predictor-screened from a spread of the ILP front. Optuna runs in-process, without
Ray, and each candidate's post-training-quantization metrics (`measure(evaluate(...))`, exactly
the engine's) are cached by candidate in `<cache_dir>/search_efficiency-<key>.json`, so repeated
and shared candidates cost nothing.

The hypervolume is the engine's (`search.pareto`: objectives divided by the FP32 teacher's,
reference point 2 in every dimension). Per space, the reference hypervolume is that of the union
front of every run; each run reports the trials it needs to reach 95% of it, and a run that never
reaches it counts as `trials + 1` (censored). Targets checked per space:

1. the engine's default sampler (the config's `search.sampler`) reaches 95% of the reference
   hypervolume in at most a third of random's trials (medians over seeds; `ratio_to_random`);
2. the ILP front alone, evaluated (`ilp`), reaches at least 90% of the reference hypervolume;
3. the quality predictor (`search.predictor`, fitted on the first half of each run's trials)
   ranks the later half's measured EER with Spearman correlation >= 0.8;
4. the engine's front weakly dominates the uniform grid within the EER's confidence interval: for
   every uniform-grid point but the smallest (nothing can undercut the space's smallest model),
   the default sampler's runs hold another candidate no larger whose EER is not significantly
   worse. The rival is the lowest-EER such candidate; both are evaluated again for their per-trial
   scores (the cache keeps metrics only) and a paired bootstrap on the same trials
   (`evaluators.metrics.paired_eer_difference_interval`) gives the 95% interval of rival EER - grid
   EER; the rival weakly dominates when the interval's lower end is <= 0. Each grid point's rival
   and interval are in the JSON.

Default (sized for 30 minutes on 2 cores): the demo model at layer granularity, random, nsga2
(the default sampler), ilp and the uniform grid, one seed, 100 trials, 5 test utterances per
speaker. `--full`: three seeds, every sampler, the demo's stage space and the larger per-layer
spaces, the whole test set. `--smoke`: a tiny model and corpus, a few trials of every new
sampler, written to a temporary folder (checks the script, measures nothing).

    .venv/bin/python benchmarks/search_efficiency.py [--full | --smoke] [--trials N] [--seeds 0 1 2]
        [--samplers nsga2 ilp ...] [--spaces demo-layer ...] [--baselines] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from evaluators.data.cache import content_hash  # noqa: E402
from evaluators.data.source_features import EvalSet  # noqa: E402
from evaluators.metrics import equal_error_rate, paired_eer_difference_interval  # noqa: E402
from evaluators.training import embed_utterances  # noqa: E402
from evaluators.verification import PreparedVerification, VerificationEvaluator  # noqa: E402
from render_docs import search_efficiency_spaces_markdown, search_efficiency_spaces_targets_markdown  # noqa: E402
from search.allocation import AllocationProblem  # noqa: E402
from search.config import RunConfig, load_config  # noqa: E402
from search.pareto import Objective, hypervolume, hypervolume_history, pareto_front  # noqa: E402
from search.predictor import QualityPredictor, prior_for  # noqa: E402
from search.samplers import (  # noqa: E402
    SAMPLER_NAMES,
    CandidateSequenceSampler,
    build_sampler,
    get_sampler_kind,
    layer_params,
)
from search.sensitivity_tables import AllocationSource  # noqa: E402
from search.tasks.base import BOOTSTRAP_REPLICATES, CONFIDENCE  # noqa: E402
from search.tasks.verification_setup import verification_setup  # noqa: E402
from search.trial import measure  # noqa: E402

FRACTION = 0.95
ILP_FRACTION = 0.9
SPEARMAN_TARGET = 0.8
QUALITY_AND_SIZE = (Objective("eer", "min"), Objective("size_bytes", "min"))
CACHE_VERSION = 1
RESCORED_EER_TOLERANCE = 1e-6
"""Largest difference between a re-scored candidate's EER and its cached one (float noise, not a stale cache)."""
MEASUREMENT_KEYS = ("task", "seed", "data", "features", "model", "teacher", "targets", "evaluation")
"""The config blocks a candidate's post-training measurement depends on (the cache key's part)."""


@dataclasses.dataclass(frozen=True)
class SpaceRecipe:
    """A benchmarked space: a ready config (or file) and the keys that change it (`--set` style)."""

    config: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_LAYER_BITS = [2, 3, 4, 5, 6, 8, 32]
SPACES: dict[str, SpaceRecipe] = {
    "demo-layer": SpaceRecipe("demo", {"space.granularity": "layer"}),
    "demo": SpaceRecipe("demo"),
    "sv_resnet34-layer": SpaceRecipe(
        "sv_resnet",
        {
            "model.blocks": [3, 4, 6, 3],
            "space.knobs": [
                {
                    "name": "quantizer",
                    "layers": ["layer*"],
                    "granularity": "layer",
                    "quantizer": ["uniform", "pow2", "kmeans"],
                },
                {"name": "bits", "layers": ["*"], "granularity": "layer", "bits": _LAYER_BITS},
            ],
        },
    ),
    "sv_ecapa-layer": SpaceRecipe(
        "sv_ecapa", {"space.knobs": [{"name": "bits", "layers": ["*"], "granularity": "layer", "bits": _LAYER_BITS}]}
    ),
}
"""Every space the benchmark knows, by name."""

DEFAULT_SPACES = ("demo-layer",)
FULL_SPACES = ("demo-layer", "demo", "sv_resnet34-layer", "sv_ecapa-layer")
DEFAULT_SAMPLERS = ("random", "nsga2", "ilp", "uniform-grid")
FULL_SAMPLERS = SAMPLER_NAMES
SMOKE_SAMPLERS = ("random", "nsga2", "ilp", "uniform-grid", "predictor-screened")
SMOKE_OVERRIDES = {
    "data.train_speakers": 6,
    "data.test_speakers": 4,
    "data.utterances_per_speaker": 4,
    "data.min_seconds": 1.0,
    "data.max_seconds": 1.5,
    "features.num_mel_bins": 24,
    "model.base_width": 4,
    "model.embedding_dim": 16,
    "teacher.steps": 15,
    "teacher.batch_size": 8,
    "teacher.crop_frames": 80,
    "search.population_size": 3,
}
"""`--smoke`: the tests' tiny corpus, model and teacher (seconds to train)."""


class CachedMeasurements:
    """The engine's PTQ measurement of a candidate, cached on disk by candidate."""

    def __init__(self, path: Path, measure_candidate: Callable[[dict[str, Any]], dict[str, float]]) -> None:
        self.path = path
        self.measure_candidate = measure_candidate
        self.entries: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
        self.evaluated = 0
        self.seconds = 0.0

    def __call__(self, candidate: dict[str, Any]) -> dict[str, float]:
        key = json.dumps(candidate, sort_keys=True)
        if key not in self.entries:
            start = time.perf_counter()
            self.entries[key] = self.measure_candidate(candidate)
            self.seconds += time.perf_counter() - start
            self.evaluated += 1
            if self.evaluated % 20 == 0:
                self.save()
        return self.entries[key]

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.entries))
        os.replace(temporary, self.path)


@dataclasses.dataclass
class BenchmarkedSpace:
    """One space ready to search: its config, prepared teacher, FP32 reference, measurements and ILP problem."""

    name: str
    config: RunConfig
    prepared: PreparedVerification
    reference: dict[str, float]
    measured: CachedMeasurements
    allocation: AllocationSource


def ptq_on_reduced_test_set(prepared: PreparedVerification, per_speaker: int | None) -> PreparedVerification:
    """Post-training quantization only, scored on the first `per_speaker` test utterances of each speaker."""
    prepared = dataclasses.replace(prepared, fidelity=dataclasses.replace(prepared.fidelity, steps=(0,)))
    if per_speaker is None:
        return prepared
    main = prepared.eval_sets[0]
    seen: dict[int, int] = {}
    keep = []
    for index, label in enumerate(main.labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= per_speaker:
            keep.append(index)
    subset = EvalSet(main.name, [main.features[i] for i in keep], [main.labels[i] for i in keep])
    return dataclasses.replace(prepared, eval_sets=[subset])


def prepare_space(name: str, extra: Mapping[str, Any], per_speaker: int | None) -> BenchmarkedSpace:
    """Load, prepare (teacher from the cache or trained) and measure the FP32 reference of one space."""
    recipe = SPACES[name]
    config = load_config(recipe.config, {**recipe.overrides, **extra})
    evaluator = VerificationEvaluator()
    prepared = ptq_on_reduced_test_set(evaluator.prepare(verification_setup(config)), per_speaker)
    fp32 = evaluator.evaluate_reference(prepared)
    reference_size = fp32.metrics["size_bytes"]
    reference = measure(fp32, config.targets, reference_size)
    resolved = config.to_dict()
    key = content_hash(CACHE_VERSION, {block: resolved[block] for block in MEASUREMENT_KEYS}, per_speaker)
    cache_path = Path(config.cache_dir) / f"search_efficiency-{key}.json"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    measured = CachedMeasurements(
        cache_path, lambda candidate: measure(evaluator.evaluate(candidate, prepared), config.targets, reference_size)
    )
    return BenchmarkedSpace(name, config, prepared, reference, measured, AllocationSource(config, prepared))


def run_sampler(name: str, seed: int, trials: int, space: BenchmarkedSpace, baselines: bool) -> list[dict[str, Any]]:
    """One search with sampler `name`: the rows (candidate + metrics) in proposal order."""
    config, prepared = space.config, space.prepared
    sampler = build_sampler(
        name,
        seed=seed,
        population_size=config.search.population_size,
        space=prepared.space,
        sensitivities=prepared.sensitivities,
        layer_params=layer_params(prepared.space, prepared.teacher_state),
        allocation=space.allocation,
    )
    study = optuna.create_study(directions=[f"{o.direction}imize" for o in config.objectives], sampler=sampler)
    with warnings.catch_warnings():  # flagged experimental; the screened sampler reads the names to pick its priors
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([objective.metric for objective in config.objectives])
    if baselines and not get_sampler_kind(name).replays_sequence:
        for bits in config.space.baselines:
            study.enqueue_trial(prepared.space.uniform_candidate(bits))
    rows = []
    for _ in range(trials):
        if isinstance(sampler, CandidateSequenceSampler) and sampler.exhausted(study):
            break
        trial = study.ask()
        prepared.space.suggest(trial)
        metrics = space.measured(dict(trial.params))
        study.tell(trial, [metrics[objective.metric] for objective in config.objectives])
        rows.append({**trial.params, **metrics, "status": "complete"})
    return rows


def trials_to_reach(history: Sequence[float], target: float) -> int | None:
    """The first number of trials whose hypervolume reaches `target`, or None."""
    return next((count for count, value in enumerate(history, start=1) if value >= target), None)


def held_out_spearman(rows: list[dict[str, Any]], problem: AllocationProblem, metric: str) -> float | None:
    """Spearman correlation of the predictor fitted on the first half of a run with the later half's `metric`.

    None when the later half has fewer than 4 trials or a constant metric (no ranking to check).
    """
    half = len(rows) // 2
    earlier, later = rows[:half], rows[half:]
    measured = [row[metric] for row in later]
    if len(later) < 4 or len(set(measured)) < 2:
        return None
    predictor = QualityPredictor(problem, prior_for(metric, problem)).fit(
        [problem.assignment(row) for row in earlier], [row[metric] for row in earlier]
    )
    predicted = predictor.predict([problem.assignment(row) for row in later])
    rho = spearmanr(predicted, measured)[0]
    return None if rho != rho else float(rho)  # NaN: a constant prediction


class TrialScores:
    """Per-trial scores of candidates' PTQ models on the space's main evaluation set, evaluated on demand and
    kept, and the paired interval of two candidates' EER difference on those trials.

    `CachedMeasurements` keeps metric dicts only; a paired bootstrap needs every trial's score, so
    the few candidates it compares are evaluated again, exactly as the engine does, and scored on
    the same trial list (`EvalSet.scored_trials` with the run's `max_trials` and seed).
    """

    def __init__(self, space: BenchmarkedSpace) -> None:
        self.space = space
        self.evaluator = VerificationEvaluator()
        self.kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def scores(self, row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of the row's candidate.

        Raises:
            ValueError: The re-scored EER is not the cached one (a stale `search_efficiency-*.json`).
        """
        prepared = self.space.prepared
        candidate = prepared.space.candidate_from_row(row)
        key = json.dumps(candidate, sort_keys=True)
        if key not in self.kept:
            model = self.evaluator.evaluate(candidate, prepared).compressed.model
            eval_set = prepared.eval_sets[0]
            embeddings = embed_utterances(model, eval_set.features).numpy()
            scores, labels = eval_set.scored_trials(embeddings, prepared.max_trials, prepared.seed)
            rescored = equal_error_rate(scores, labels)
            if abs(rescored - row["eer"]) > RESCORED_EER_TOLERANCE:
                raise ValueError(
                    f"{self.space.measured.path}: candidate {key} re-scores to EER {rescored:.6f}, the cache says "
                    f"{row['eer']:.6f}; delete the file to measure again"
                )
            self.kept[key] = scores, labels
        return self.kept[key]

    def eer_difference(self, rival: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, float]:
        """The paired-bootstrap interval of EER(rival) - EER(point), both scored on the same trials."""
        (rival_scores, labels), (point_scores, _) = self.scores(rival), self.scores(point)
        low, high = paired_eer_difference_interval(
            rival_scores, point_scores, labels, BOOTSTRAP_REPLICATES, CONFIDENCE, seed=0
        )
        return {"low": low, "high": high, "confidence": CONFIDENCE, "replicates": BOOTSTRAP_REPLICATES}


def grid_domination(
    grid_rows: list[dict[str, Any]],
    engine_rows: list[dict[str, Any]],
    groups: Sequence[str],
    candidate_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    eer_difference: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, float]],
) -> list[dict[str, Any]]:
    """Per uniform-grid point: its best no-larger rival of the engine's runs and whether it weakly dominates it.

    The rival is the engine's candidate of lowest EER (then smallest) among those no larger than the
    point, the point's own candidate excluded (a point does not dominate itself). It weakly
    dominates within the confidence interval when the lower end of `eer_difference(rival, point)`,
    the interval of EER(rival) - EER(point) on the same trials, is <= 0: the rival is no larger and
    not significantly worse.
    """
    smallest = min(row["size_bytes"] for row in grid_rows)
    results = []
    for point in sorted(grid_rows, key=lambda row: row["size_bytes"]):
        own = candidate_of(point)
        rivals = [row for row in engine_rows if row["size_bytes"] <= point["size_bytes"] and candidate_of(row) != own]
        best = min(rivals, key=lambda row: (row["eer"], row["size_bytes"]), default=None)
        interval = None if best is None else eer_difference(best, point)
        results.append(
            {
                "bits": point[groups[0]],
                "size_bytes": point["size_bytes"],
                "eer": point["eer"],
                "smallest_in_space": point["size_bytes"] == smallest,
                "rival": None if best is None else {k: best[k] for k in (*groups, "eer", "size_bytes")},
                "rival_is_mixed": best is not None and len({best[knob] for knob in groups}) > 1,
                "eer_difference_interval": interval,
                "weakly_dominated": interval is not None and interval["low"] <= 0.0,
            }
        )
    return results


def summarize(
    runs: dict[str, dict[int, list[dict[str, Any]]]], space: BenchmarkedSpace, trials: int
) -> dict[str, Any]:
    """One space's figures: trials to 95% per sampler (censored), ratio to random, the four targets."""
    config, reference = space.config, space.reference
    objectives = config.objectives
    union = [row for by_seed in runs.values() for rows in by_seed.values() for row in rows]
    reference_hv = hypervolume(union, objectives, reference)
    target = FRACTION * reference_hv
    problem = space.allocation()
    quality = objectives[0].metric
    samplers: dict[str, Any] = {}
    for name, by_seed in runs.items():
        histories = {seed: hypervolume_history(rows, objectives, reference) for seed, rows in by_seed.items()}
        reached = {seed: trials_to_reach(history, target) for seed, history in histories.items()}
        censored = [value if value is not None else trials + 1 for value in reached.values()]
        spearman = {seed: held_out_spearman(rows, problem, quality) for seed, rows in by_seed.items()}
        samplers[name] = {
            "trials_to_95": reached,
            "median_trials_to_95": statistics.median(censored),
            "final_hypervolume": {seed: history[-1] if history else 0.0 for seed, history in histories.items()},
            "hypervolume_history": histories,
            "distinct_candidates": {
                seed: len({json.dumps(row, sort_keys=True) for row in rows}) for seed, rows in by_seed.items()
            },
            "predictor_spearman": spearman,
        }
    summary: dict[str, Any] = {
        "config": SPACES[space.name].config,
        "overrides": dict(SPACES[space.name].overrides),
        "knobs": len(space.prepared.space.knobs),
        "engine_sampler": config.search.sampler,
        "reference_hypervolume": reference_hv,
        "fp32_reference": reference,
        "samplers": samplers,
        "targets": [],
    }
    engine = samplers.get(config.search.sampler)
    if engine is not None and "random" in samplers:
        engine_median, random_median = engine["median_trials_to_95"], samplers["random"]["median_trials_to_95"]
        ratio = engine_median / random_median
        summary["ratio_to_random"] = ratio
        summary["targets"].append(
            _target(
                f"{config.search.sampler} reaches 95% of the reference HV in a third of random's trials (medians, censored)",
                ratio <= 1 / 3,
                f"{engine_median:g} vs random {random_median:g} (ratio {ratio:.2f})",
            )
        )
    if "ilp" in samplers:
        ilp_ratio = statistics.median(samplers["ilp"]["final_hypervolume"].values()) / reference_hv
        summary["ilp_hypervolume_ratio"] = ilp_ratio
        summary["targets"].append(
            _target("the ILP front alone reaches 90% of the reference HV", ilp_ratio >= ILP_FRACTION, f"{ilp_ratio:.3f}")
        )
    correlations = [rho for data in samplers.values() for rho in data["predictor_spearman"].values() if rho is not None]
    if correlations:
        median_rho = statistics.median(correlations)
        summary["predictor_spearman"] = median_rho
        summary["targets"].append(
            _target(
                "the predictor ranks held-out later-half trials with Spearman >= 0.8 (median over runs)",
                median_rho >= SPEARMAN_TARGET,
                f"{median_rho:.2f} over {len(correlations)} runs",
            )
        )
    if "uniform-grid" in runs and engine is not None:
        groups = list(space.prepared.space.groups)
        grid_rows = next(iter(runs["uniform-grid"].values()))
        engine_rows = [row for rows in runs[config.search.sampler].values() for row in rows]
        difference = TrialScores(space).eer_difference
        points = grid_domination(grid_rows, engine_rows, groups, space.prepared.space.candidate_from_row, difference)
        unbeaten = [
            str(point["bits"]) for point in points if not point["weakly_dominated"] and not point["smallest_in_space"]
        ]
        summary["uniform_grid_domination"] = points
        summary["targets"].append(
            _target(
                f"the {config.search.sampler} runs weakly dominate every uniform point but the smallest: a candidate "
                f"no larger whose EER is not worse beyond the {CONFIDENCE:.0%} paired-bootstrap interval",
                not unbeaten,
                f"not dominated at {', '.join(unbeaten)} bits" if unbeaten else "all weakly dominated",
            )
        )
    return summary


def _target(description: str, met: bool, figures: str) -> dict[str, Any]:
    return {"target": description, "met": bool(met), "figures": figures}


def plot(summary: dict[str, Any], runs: dict[str, Any], path: Path, trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, fronts) = plt.subplots(1, 2, figsize=(12, 4.5))
    reference = summary["reference_hypervolume"]
    for name, data in summary["samplers"].items():
        histories = [h for h in data["hypervolume_history"].values() if h]
        if not histories:
            continue
        length = max(len(h) for h in histories)
        padded = [h + [h[-1]] * (length - len(h)) for h in histories]
        mean = [statistics.mean(values) / reference for values in zip(*padded)]
        curves.plot(range(1, length + 1), mean, label=f"{name} (median {data['median_trials_to_95']} trials)")
    curves.axhline(FRACTION, color="grey", linestyle="--", linewidth=1)
    curves.set(xlabel="trials", ylabel="hypervolume / reference (mean over seeds)", xlim=(1, max(trials, 2)), ylim=(0, 1.02))
    curves.legend(fontsize=8)
    curves.set_title("Hypervolume vs trials")
    for name, marker in (("nsga2", "o"), ("ilp", "D"), ("uniform-grid", "s"), ("sensitivity-greedy", "^")):
        if name not in runs:
            continue
        rows = [row for rows in runs[name].values() for row in rows]
        front = sorted((rows[i] for i in pareto_front(rows, QUALITY_AND_SIZE)), key=lambda row: row["size_bytes"])
        fronts.plot([r["size_bytes"] / 1000 for r in front], [100 * r["eer"] for r in front], marker=marker, label=name)
    fronts.set(xlabel="size (kB)", ylabel="EER %", title="(EER, size) fronts, all seeds")
    fronts.set_ylim(top=min(40, fronts.get_ylim()[1]))
    fronts.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="three seeds, every sampler and space, the whole test set")
    mode.add_argument("--smoke", action="store_true", help="tiny model and corpus, a few trials: checks the script runs")
    parser.add_argument("--trials", type=int, default=None, help="trials per run (default 100; --smoke: 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="(default 0; --full: 0 1 2)")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLER_NAMES, default=None)
    parser.add_argument("--spaces", nargs="+", choices=list(SPACES), default=None)
    parser.add_argument(
        "--per-speaker", type=int, default=None, help="test utterances per speaker (default 5; --full: all)"
    )
    parser.add_argument("--baselines", action="store_true", help="enqueue the config's baselines, as the engine")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no spin-waiting on a busy machine)")
    parser.add_argument("--out", default=None, help="JSON path (default results/benchmarks/search_efficiency.json)")
    args = parser.parse_args(argv)
    samplers = args.samplers or (FULL_SAMPLERS if args.full else SMOKE_SAMPLERS if args.smoke else DEFAULT_SAMPLERS)
    spaces = args.spaces or (FULL_SPACES if args.full else DEFAULT_SPACES)
    seeds = args.seeds or ([0, 1, 2] if args.full else [0])
    trials = args.trials or (8 if args.smoke else 100)
    per_speaker = args.per_speaker if args.per_speaker is not None else (None if args.full else 5)
    scratch = Path(tempfile.gettempdir()) / "search_efficiency_smoke"
    extra = {**SMOKE_OVERRIDES, "cache_dir": str(scratch / "cache")} if args.smoke else {}
    results_dir = scratch if args.smoke else ROOT / "results" / "benchmarks"
    out = Path(args.out) if args.out else results_dir / "search_efficiency.json"
    out.parent.mkdir(parents=True, exist_ok=True)  # the figures are written there space by space
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()

    results: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    evaluations = {"new": 0, "seconds": 0.0}
    for space_name in spaces:
        space = prepare_space(space_name, extra, per_speaker)
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for name in samplers:
            runs[name] = {}
            for seed in seeds:
                start = time.perf_counter()
                runs[name][seed] = run_sampler(name, seed, trials, space, args.baselines)
                space.measured.save()
                print(
                    f"{space_name} {name} seed {seed}: {len(runs[name][seed])} trials, {time.perf_counter() - start:.0f} s "
                    f"(cache {len(space.measured.entries)} candidates)",
                    flush=True,
                )
        results[space_name] = summarize(runs, space, trials)
        rows[space_name] = runs
        evaluations["new"] += space.measured.evaluated
        evaluations["seconds"] += space.measured.seconds
        plot(results[space_name], runs, out.with_name(f"{out.stem}-{space_name}.png"), trials)
    payload = {
        "command": " ".join(["benchmarks/search_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
        "trials": trials,
        "seeds": seeds,
        "test_utterances_per_speaker": per_speaker,
        "baselines_enqueued": args.baselines,
        "reference_point": 2.0,
        "evaluations": {"new": evaluations["new"], "seconds_per_new": evaluations["seconds"] / max(1, evaluations["new"])},
        "wall_seconds": time.perf_counter() - started,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "spaces": results,
        "rows": rows,
    }
    out.write_text(json.dumps(payload, indent=1))
    table = f"{search_efficiency_spaces_markdown(payload)}\n\n{search_efficiency_spaces_targets_markdown(payload)}"
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {out}, {out.with_suffix('.md')} and one figure per space in {payload['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
