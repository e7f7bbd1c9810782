"""Search efficiency of the samplers: hypervolume against the number of trials, on the demo.

Every sampler of the engine (`search.samplers.build_sampler`, the same objects `search run`
uses) proposes candidates of `configs/demo.yaml`'s space for `--trials` trials and each of
`--seeds`. The samplers start from nothing: the engine enqueues the config's uniform baselines
before any sampler, which would hand every sampler most of the hypervolume in its first trials
and hide their differences (`--baselines` does as the engine does). Optuna runs in-process,
without Ray, and each candidate's post-training-quantization metrics
(`measure(evaluate(...))`, exactly the engine's) are cached by candidate in
`results/cache/search_efficiency-<key>.json`, so repeated and shared candidates cost nothing.

The hypervolume is the engine's (`search.pareto`: objectives divided by the FP32 teacher's,
reference point 2 in every dimension). The reference hypervolume is that of the union front of
every run; each run reports the trials it needs to reach 95% of it. Targets checked:

1. nsga2 or tpe reaches 95% of the reference hypervolume in at most a third of random's trials
   (median over seeds; a run that never reaches it counts as `trials + 1`);
2. mixed precision beats uniform bits: every uniform-grid point is strictly dominated in
   (EER, size) by a mixed-precision candidate of the nsga2 runs (all seeds; the other samplers
   are reported too). The grid's smallest point is the smallest model of the space: nothing can
   undercut its size, so it is reported apart.

Default: 100 trials x 3 seeds for nsga2, tpe, random,
uniform-grid and sensitivity-greedy, on 5 test utterances per speaker (the 40 test speakers,
19,900 trials per EER). `--full`: the demo's whole test set (20 utterances per speaker) and gp too.

    .venv/bin/python benchmarks/search_efficiency.py [--full] [--trials N] [--seeds 0 1 2]
        [--samplers nsga2 tpe ...] [--baselines] [--out results/benchmarks/search_efficiency.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from evaluators.data.cache import content_hash  # noqa: E402
from evaluators.data.source_features import EvalSet  # noqa: E402
from evaluators.verification import PreparedVerification, VerificationEvaluator  # noqa: E402
from search.config import RunConfig, load_config  # noqa: E402
from search.pareto import Objective, hypervolume, hypervolume_history, pareto_front  # noqa: E402
from search.samplers import CandidateSequenceSampler, build_sampler, get_sampler_kind, layer_params  # noqa: E402
from search.trial import measure  # noqa: E402
from render_docs import search_efficiency_markdown  # noqa: E402
from search.tasks.verification_setup import verification_setup  # noqa: E402

DEFAULT_SAMPLERS = ("nsga2", "tpe", "random", "uniform-grid", "sensitivity-greedy")
FULL_SAMPLERS = ("nsga2", "tpe", "gp", "random", "uniform-grid", "sensitivity-greedy")
FRACTION = 0.95
QUALITY_AND_SIZE = (Objective("eer", "min"), Objective("size_bytes", "min"))
CACHE_VERSION = 1
MEASUREMENT_KEYS = ("task", "seed", "data", "features", "model", "teacher", "targets", "evaluation")
"""The config blocks a candidate's post-training measurement depends on (the cache key's part)."""


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


def run_sampler(
    name: str,
    seed: int,
    trials: int,
    config: RunConfig,
    prepared: PreparedVerification,
    measured: CachedMeasurements,
    baselines: bool,
) -> list[dict[str, Any]]:
    """One search with sampler `name`: the rows (candidate + metrics) in proposal order."""
    space = prepared.space
    sampler = build_sampler(
        name,
        seed=seed,
        population_size=config.search.population_size,
        space=space,
        sensitivities=prepared.sensitivities,
        layer_params=layer_params(space, prepared.teacher_state),
    )
    study = optuna.create_study(directions=[f"{o.direction}imize" for o in config.objectives], sampler=sampler)
    if baselines and not get_sampler_kind(name).replays_sequence:
        for bits in config.space.baselines:
            study.enqueue_trial(space.uniform_candidate(bits))
    rows = []
    for _ in range(trials):
        if isinstance(sampler, CandidateSequenceSampler) and sampler.exhausted(study):
            break
        trial = study.ask()
        space.suggest(trial)
        metrics = measured(dict(trial.params))
        study.tell(trial, [metrics[objective.metric] for objective in config.objectives])
        rows.append({**trial.params, **metrics, "status": "complete"})
    return rows


def trials_to_reach(history: Sequence[float], target: float) -> int | None:
    """The first number of trials whose hypervolume reaches `target`, or None."""
    return next((count for count, value in enumerate(history, start=1) if value >= target), None)


def grid_domination(
    grid_rows: list[dict[str, Any]], engine_rows: list[dict[str, Any]], groups: Sequence[str]
) -> list[dict[str, Any]]:
    """Per uniform-grid point: the best mixed-precision engine candidate no larger, and whether it wins."""
    mixed = [row for row in engine_rows if len({row[knob] for knob in groups}) > 1]
    smallest = min(row["size_bytes"] for row in grid_rows)
    results = []
    for point in sorted(grid_rows, key=lambda row: row["size_bytes"]):
        rivals = [row for row in mixed if row["size_bytes"] <= point["size_bytes"]]
        best = min(rivals, key=lambda row: (row["eer"], row["size_bytes"]), default=None)
        # no larger, and better in EER or (at equal EER) smaller: strict dominance in (EER, size)
        wins = best is not None and (best["eer"], best["size_bytes"]) < (point["eer"], point["size_bytes"])
        results.append(
            {
                "bits": point[groups[0]],
                "size_bytes": point["size_bytes"],
                "eer": point["eer"],
                "smallest_in_space": point["size_bytes"] == smallest,
                "best_mixed": None if best is None else {k: best[k] for k in (*groups, "eer", "size_bytes")},
                "dominated_by_mixed": bool(wins),
            }
        )
    return results


def summarize(
    runs: dict[str, dict[int, list[dict[str, Any]]]], config: RunConfig, reference: dict[str, float], trials: int
) -> dict[str, Any]:
    objectives = config.objectives
    union = [row for by_seed in runs.values() for rows in by_seed.values() for row in rows]
    reference_hv = hypervolume(union, objectives, reference)
    target = FRACTION * reference_hv
    samplers: dict[str, Any] = {}
    for name, by_seed in runs.items():
        histories = {seed: hypervolume_history(rows, objectives, reference) for seed, rows in by_seed.items()}
        reached = {seed: trials_to_reach(history, target) for seed, history in histories.items()}
        counted = [value if value is not None else trials + 1 for value in reached.values()]
        samplers[name] = {
            "trials_to_95": reached,
            "median_trials_to_95": statistics.median(counted),
            "final_hypervolume": {seed: history[-1] if history else 0.0 for seed, history in histories.items()},
            "hypervolume_history": histories,
            "distinct_candidates": {
                seed: len({json.dumps(row, sort_keys=True) for row in rows}) for seed, rows in by_seed.items()
            },
        }
    model_based = [samplers[name]["median_trials_to_95"] for name in ("nsga2", "tpe") if name in samplers]
    random_median = samplers.get("random", {}).get("median_trials_to_95")
    summary: dict[str, Any] = {"reference_hypervolume": reference_hv, "samplers": samplers}
    if model_based and random_median is not None:
        best = min(model_based)
        summary["target_efficiency"] = {
            "best_of_nsga2_tpe_median_trials": best,
            "random_median_trials": random_median,
            "met": best <= random_median / 3,
        }
    if "uniform-grid" in runs:
        groups = list(config_groups(runs))
        grid_rows = next(iter(runs["uniform-grid"].values()))
        per_sampler = {
            name: grid_domination(grid_rows, [row for rows in by_seed.values() for row in rows], groups)
            for name, by_seed in runs.items()
            if name != "uniform-grid"
        }
        summary["target_mixed_beats_uniform"] = {
            "per_sampler": per_sampler,
            "met": "nsga2" in per_sampler
            and all(point["dominated_by_mixed"] for point in per_sampler["nsga2"] if not point["smallest_in_space"]),
        }
    return summary


def config_groups(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> list[str]:
    """The bits knobs, read from a uniform-grid row (every knob there has the same width)."""
    row = next(iter(runs["uniform-grid"].values()))[0]
    return [key for key in row if key.startswith("bits.")]


def plot(summary: dict[str, Any], runs: dict[str, Any], path: Path, trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, fronts) = plt.subplots(1, 2, figsize=(12, 4.5))
    reference = summary["reference_hypervolume"]
    for name, data in summary["samplers"].items():
        histories = [h for h in data["hypervolume_history"].values() if h]
        length = max(len(h) for h in histories)
        padded = [h + [h[-1]] * (length - len(h)) for h in histories]
        mean = [statistics.mean(values) / reference for values in zip(*padded)]
        curves.plot(range(1, length + 1), mean, label=f"{name} (median {data['median_trials_to_95']} trials)")
    curves.axhline(FRACTION, color="grey", linestyle="--", linewidth=1)
    curves.set(xlabel="trials", ylabel="hypervolume / reference (mean over seeds)", xlim=(1, trials), ylim=(0, 1.02))
    curves.legend(fontsize=8)
    curves.set_title("Hypervolume vs trials")
    for name, marker in (("nsga2", "o"), ("uniform-grid", "s"), ("sensitivity-greedy", "^")):
        if name not in runs:
            continue
        rows = [row for rows in runs[name].values() for row in rows]
        front = [rows[i] for i in pareto_front(rows, QUALITY_AND_SIZE)]
        front.sort(key=lambda row: row["size_bytes"])
        fronts.plot([r["size_bytes"] / 1000 for r in front], [100 * r["eer"] for r in front], marker=marker, label=name)
    fronts.set(xlabel="size (kB)", ylabel="EER %", title="(EER, size) fronts, all seeds")
    fronts.set_ylim(top=min(40, fronts.get_ylim()[1]))
    fronts.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="whole demo test set, gp sampler too")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=None)
    parser.add_argument(
        "--per-speaker", type=int, default=None, help="test utterances per speaker (default 5; --full: all)"
    )
    parser.add_argument("--baselines", action="store_true", help="enqueue the config's baselines, as the engine")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no spin-waiting on a busy machine)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "search_efficiency.json"))
    args = parser.parse_args(argv)
    samplers = args.samplers or (FULL_SAMPLERS if args.full else DEFAULT_SAMPLERS)
    per_speaker = args.per_speaker if args.per_speaker is not None else (None if args.full else 5)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()

    config = load_config(args.config)
    evaluator = VerificationEvaluator()
    prepared = ptq_on_reduced_test_set(evaluator.prepare(verification_setup(config)), per_speaker)
    fp32 = evaluator.evaluate_reference(prepared)
    reference_size = fp32.metrics["size_bytes"]
    reference = measure(fp32, config.targets, reference_size)
    resolved = config.to_dict()
    key = content_hash(CACHE_VERSION, {name: resolved[name] for name in MEASUREMENT_KEYS}, per_speaker)
    cache_path = Path(config.cache_dir) / f"search_efficiency-{key}.json"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    measured = CachedMeasurements(
        cache_path, lambda candidate: measure(evaluator.evaluate(candidate, prepared), config.targets, reference_size)
    )
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name in samplers:
        runs[name] = {}
        for seed in args.seeds:
            start = time.perf_counter()
            runs[name][seed] = run_sampler(name, seed, args.trials, config, prepared, measured, args.baselines)
            measured.save()
            print(
                f"{name} seed {seed}: {len(runs[name][seed])} trials, {time.perf_counter() - start:.0f} s "
                f"(cache {len(measured.entries)} candidates)",
                flush=True,
            )
    summary = summarize(runs, config, reference, args.trials)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(["benchmarks/search_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": str(Path(args.config).relative_to(ROOT)) if Path(args.config).is_relative_to(ROOT) else args.config,
        "trials": args.trials,
        "seeds": args.seeds,
        "test_utterances_per_speaker": per_speaker,
        "baselines_enqueued": args.baselines,
        "objectives": [[o.metric, o.direction] for o in config.objectives],
        "reference_point": 2.0,
        "fp32_reference": reference,
        "evaluations": {"new": measured.evaluated, "seconds_per_new": measured.seconds / max(1, measured.evaluated)},
        "wall_seconds": time.perf_counter() - started,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        **summary,
        "rows": runs,
    }
    out.write_text(json.dumps(payload, indent=1))
    plot(summary, runs, out.with_suffix(".png"), args.trials)
    table = search_efficiency_markdown(payload)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    for target in ("target_efficiency", "target_mixed_beats_uniform"):
        if target in summary:
            print(f"{target}: {'met' if summary[target]['met'] else 'NOT met'}")
    print(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.md')} in {payload['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
