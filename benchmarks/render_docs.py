"""The one renderer of measured tables: docs pages and benchmark Markdown from results/benchmarks/*.json.

A table in a Markdown page sits between two markers; only the text between them is generated:

    <!-- table:quant_table -->
    | weights | method | ... |
    <!-- /table -->

The name after `table:` is a key of `TABLES`, which says which JSON files the table is rendered
from and by which function. The benchmark scripts write those JSON files (and, for their own
`.md` files, call the same functions), so a figure in the docs is never typed by hand.

    .venv/bin/python benchmarks/render_docs.py           # rewrite every table of README.md and docs/*.md
    .venv/bin/python benchmarks/render_docs.py --check   # exit 1 listing the tables that differ from their JSON

Imports nothing of the engine (no torch): rendering is formatting only.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "benchmarks"
OPENING, CLOSING = "<!-- table:", "<!-- /table -->"
MARKER = re.compile(rf"^(?P<open>{OPENING}(?P<name>[\w-]+) -->\n)(?P<body>.*?)^(?P<close>{CLOSING})", re.S | re.M)
OPENING_LINE = re.compile(rf"^{OPENING}", re.M)
"""Markers count only at the start of a line, so prose can quote them."""


class RenderError(ValueError):
    """A page names an unknown table, or a table's JSON is missing or lacks a key; the message says which."""


def pages(root: Path = ROOT) -> list[Path]:
    """The Markdown pages whose tables are generated: README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _met(flag: bool) -> str:
    return "yes" if flag else "no"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# Quantizers (benchmarks/quant_table.py)


def quant_config_markdown(result: Mapping[str, Any]) -> str:
    """One config's rows and issue #3's targets, as `quant_table.py` writes them."""
    rows = (
        (
            row["weights"],
            row["method"],
            f"{100 * row['eer']:.2f} [{100 * row['eer_low']:.2f}, {100 * row['eer_high']:.2f}]",
            f"{row['min_dcf']:.3f}",
            f"{row['size_bytes']:,}",
            f"{row['compression']:.2f}x",
            f"{row['quantized_layer_compression']:.2f}x",
        )
        for row in result["rows"]
    )
    header = ("weights", "method", "EER % [95% CI]", "minDCF", "size (bytes)", "compression", "quantized layers")
    targets = (
        (
            name,
            _met(target["met"]),
            ", ".join(f"{key} {_figure(value)}" for key, value in target.items() if key != "met"),
        )
        for name, target in result["targets"].items()
    )
    caption = (
        f"`{result['config']}` ({result['family']}, {result['params']:,} quantizable weights; "
        f"QAT: {result['qat_steps']} steps)"
    )
    return "\n\n".join([caption, _table(header, rows), _table(("target", "met", "figures"), targets)]) + "\n"


def _figure(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_figure(item) for item in value) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def quant_table_markdown(payload: Mapping[str, Any]) -> str:
    """Every config of quant_table.json (the content of quant_table.md)."""
    return "\n".join(quant_config_markdown(result) for result in payload["results"])


# Distillation (benchmarks/kd_table.py)


def kd_table_markdown(payload: Mapping[str, Any]) -> str:
    """Every student row of kd_table.json, teacher rows first (the content of kd_table.md)."""
    header = (
        "teacher", "student width", "distilled", "init", "steps", "weights", "parameters", "size (bytes)", "smaller",
        "EER % (95% CI)", "vs teacher",
    )
    return _table(header, (_kd_cells(row) for row in payload["rows"]))


def _kd_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    teacher = row["mix"] == "teacher"
    return (
        row["teacher"],
        "teacher" if teacher else f"1/{round(1 / row['width'])}",
        "-" if teacher else _mix(row),
        row["init"],
        "-" if teacher else f"{row['steps']:,}",
        "FP32" if row["bits"] == 32 else f"{row['bits']}-bit",
        f"{row['params']:,}",
        f"{row['size_bytes']:,}",
        "-" if teacher else f"{100 * row['size_reduction']:.0f}%",
        _eer_interval(row),
        "-" if teacher else f"{100 * row['relative_eer']:+.0f}%",
    )


def _mix(row: Mapping[str, Any]) -> str:
    return {"scratch": "none (scratch)"}.get(row["mix"], row["mix"])


def _eer_interval(row: Mapping[str, Any]) -> str:
    return f"{100 * row['eer']:.2f} ({100 * row['eer_low']:.2f}-{100 * row['eer_high']:.2f})"


def kd_targets_markdown(payload: Mapping[str, Any]) -> str:
    """The distillation targets per teacher, each with the widths or the student it was judged on."""
    rows = []
    for teacher, targets in payload["targets"].items():
        small = targets["smaller_by_75pct_within_10pct_eer"]
        best = small["best"]
        bits = "FP32" if best["bits"] == 32 else f"{best['bits']}-bit"
        rows.append((
            teacher,
            "smaller by >= 75% within +10% EER",
            _met(small["met"]),
            f"best: 1/{round(1 / best['width'])} width, {best['mix']}, {best['init']} init, {best['steps']:,} steps, "
            f"{bits}: {100 * best['size_reduction']:.0f}% smaller, {100 * best['relative_eer']:+.0f}% EER",
        ))
        beats = targets["distillation_beats_scratch"]
        rows.append((
            teacher,
            "distillation beats the same student from scratch (equal budget)",
            _met(all(width["met"] for width in beats.values())),
            "beyond the interval at " + _widths(width for width, result in beats.items() if result["beyond_interval"]),
        ))
        long = {
            row["mix"]: row
            for row in payload["rows"]
            if row["teacher"] == teacher and row["steps"] == payload["long_steps"] and row["bits"] == 32
        }
        rows.append((
            teacher,
            "distillation beats slice fine-tuning alone (long budget)",
            _met(targets["distillation_beats_slice_fine_tuning_at_long_budget"]),
            ", ".join(f"{_mix(row)}: EER % {_eer_interval(row)}" for row in long.values()),
        ))
        concat = targets["concat_at_least_as_good_as_either_level"]
        rows.append((
            teacher,
            "concatenated levels at least as good as either level alone",
            _met(all(concat.values())),
            "met at " + _widths(width for width, met in concat.items() if met),
        ))
    return _table(("teacher", "target", "met", "figures"), rows)


def _widths(widths: Iterable[str]) -> str:
    """Width multipliers as written in kd_table.json's targets ("0.25"), as fractions: "1/2, 1/4"."""
    return ", ".join(f"1/{round(1 / float(width))}" for width in widths) or "no width"


# Extraction (benchmarks/extraction_teacher.py, benchmarks/extraction_table.py)


def extraction_teacher_markdown(payload: Mapping[str, Any]) -> str:
    """The extraction teacher's SI-SDRi on the fixed test mixtures against its target."""
    header = ("config", "parameters", "teacher steps", "test mixtures", "SI-SDRi dB", "SDRi dB", "target dB", "met")
    row = (
        f"`{payload['config']}`",
        f"{payload['params']:,}",
        f"{payload['teacher']['steps']:,}",
        payload["test_mixtures"],
        f"{payload['si_sdri_db']:.2f}",
        f"{payload['sdri_db']:.2f}",
        f"{payload['target_si_sdri_db']:.1f}",
        _met(payload["reaches_target"]),
    )
    return _table(header, [row])


def extraction_table_markdown(payload: Mapping[str, Any]) -> str:
    """Every compressed variant of extraction_table.json (the content of extraction_table.md)."""
    header = (
        "model", "SI-SDRi dB", "vs FP32 dB", "SDRi dB", "size (bytes)", "compression (file)",
        "compression (enc + sep + dec)",
    )
    rows = (
        (
            row["label"],
            f"{row['si_sdri']:.2f}",
            f"{row['delta_si_sdri']:+.2f}",
            f"{row['sdri']:.2f}",
            f"{row['size_bytes']:,}",
            f"{row['compression']:.2f}x",
            f"{row['covered_compression']:.2f}x",
        )
        for row in payload["rows"]
    )
    return _table(header, rows) + "\n"


EXTRACTION_TARGETS = {
    "distilled_3_bit_within_0_5_db": ("3-bit QAT + distillation within 0.5 dB of FP32", "3-bit QAT + distillation", "delta"),
    "distilled_3_bit_ratio_at_least_8_5": ("3-bit at >= 8.5x (enc + sep + dec)", "3-bit QAT + distillation", "ratio"),
    "shared_ratio_at_least_20": ("sharing at >= 20x (enc + sep + dec)", "3-bit QAT + distillation + sharing", "ratio"),
    "shared_within_0_5_db": ("sharing within 0.5 dB of FP32", "3-bit QAT + distillation + sharing", "delta"),
}
"""extraction_table.json's target keys: what each says, the row it is judged on and which figure of it."""


def extraction_targets_markdown(payload: Mapping[str, Any]) -> str:
    """Issue #8's targets with the figure each was judged on."""
    by_label = {row["label"]: row for row in payload["rows"]}
    rows = []
    for key, met in payload["targets"].items():
        text, label, figure = EXTRACTION_TARGETS[key]
        row = by_label[label]
        value = f"{row['delta_si_sdri']:+.2f} dB" if figure == "delta" else f"{row['covered_compression']:.2f}x"
        rows.append((text, _met(met), f"{label}: {value}"))
    return _table(("target", "met", "figure"), rows)


# Samplers (benchmarks/search_efficiency.py)


def search_efficiency_spaces_markdown(payload: Mapping[str, Any]) -> str:
    """Per space and sampler: trials to 95% of the space's reference hypervolume (censored at trials + 1),
    the final hypervolume and the predictor's held-out Spearman correlation (the JSON with `spaces`)."""
    trials = payload["trials"]
    rows = []
    for space, summary in payload["spaces"].items():
        for name, data in summary["samplers"].items():
            per_seed = ", ".join("never" if value is None else str(value) for value in data["trials_to_95"].values())
            median = data["median_trials_to_95"]
            final = statistics.mean(data["final_hypervolume"].values()) / summary["reference_hypervolume"]
            correlations = [rho for rho in data["predictor_spearman"].values() if rho is not None]
            rho = f"{statistics.median(correlations):.2f}" if correlations else "-"
            rows.append((space, name, per_seed, f"> {trials}" if median > trials else f"{median:g}", f"{final:.3f}", rho))
    header = ("space", "sampler", "trials to 95% of reference HV (per seed)", "median", "final HV / reference (mean)", "predictor Spearman")
    return _table(header, rows)


def search_efficiency_spaces_targets_markdown(payload: Mapping[str, Any]) -> str:
    """Each space's targets as the benchmark judged them (the JSON with `spaces`)."""
    rows = [
        (space, target["target"], _met(target["met"]), target["figures"])
        for space, summary in payload["spaces"].items()
        for target in summary["targets"]
    ]
    return _table(("space", "target", "met", "figures"), rows)


def search_efficiency_seeds(*payloads: Mapping[str, Any]) -> dict[str, Any]:
    """The `--full` runs, one JSON per space, as one payload with every space."""
    trials = {payload["trials"] for payload in payloads}
    if len(trials) != 1:
        raise ValueError(f"the per-space runs differ in trials: {sorted(trials)}")
    return {"trials": trials.pop(), "spaces": {k: v for payload in payloads for k, v in payload["spaces"].items()}}


# Real speech (benchmarks/an4_eer.py)


def an4_eer_markdown(payload: Mapping[str, Any]) -> str:
    """EER and minDCF on every evaluation set, per teacher and weight precision."""
    sets = list(dict.fromkeys(eval_set["name"] for teacher in payload["teachers"] for eval_set in teacher["eval_sets"]))
    header = ["config", "trained on", "weights", "size (bytes)", "compression"]
    for name in sets:
        header += [f"EER % {name}", f"minDCF {name}"]
    rows = []
    for teacher in payload["teachers"]:
        for point in teacher["points"]:
            cells = [f"`{teacher['config']}`", teacher["train"], point["weights"], f"{point['size_bytes']:,}"]
            cells.append(f"{point['compression']:.2f}x")
            for name in sets:
                cells += [f"{point[f'eer_percent@{name}']:.2f}", f"{point[f'min_dcf@{name}']:.3f}"]
            rows.append(cells)
    return _table(header, rows)


def an4_sets_markdown(payload: Mapping[str, Any]) -> str:
    """What each evaluation set of the AN4 benchmark holds."""
    rows = {
        eval_set["name"]: (
            eval_set["name"], eval_set["source"], eval_set["speakers"], eval_set["utterances"], eval_set["trials"],
        )
        for teacher in payload["teachers"]
        for eval_set in teacher["eval_sets"]
    }
    return _table(("set", "source", "speakers", "utterances", "trials"), rows.values())


# Exported bundles (benchmarks/bundle_latency.py)


def bundle_latency_markdown(payload: Mapping[str, Any]) -> str:
    """`search verify`'s checks and onnxruntime's time per bundle, beside PyTorch's and the cost model's."""
    header = (
        "trial", "weights", "weights.bin (bytes)", "checks passed", "onnxruntime ms (median)",
        "PyTorch ms (fastest / median)", "cost model x86-avx2 ms",
    )
    rows = (
        (
            bundle["trial"],
            ", ".join(dict.fromkeys(bundle["layers"].values())),
            f"{bundle['size_bytes']:,}",
            f"{sum(check['passed'] for check in bundle['checks'].values())} of {len(bundle['checks'])}",
            f"{bundle['onnxruntime_ms']:.2f}",
            f"{bundle['pytorch_fastest_ms']:.2f} / {bundle['pytorch_ms']:.2f}",
            f"{bundle['predicted_ms']['x86-avx2']:.3f}",
        )
        for bundle in payload["bundles"]
    )
    return _table(header, rows)


def bundle_checks_markdown(payload: Mapping[str, Any]) -> str:
    """Every `search verify` check of every bundle with its detail."""
    rows = (
        (bundle["trial"], name, _met(check["passed"]), check["detail"])
        for bundle in payload["bundles"]
        for name, check in bundle["checks"].items()
    )
    return _table(("trial", "check", "passed", "detail"), rows)


# The demo, the ready configs' teachers and the cost model (demo_front.py, ready_teachers.py, cost_predictions.py)


def demo_front_markdown(payload: Mapping[str, Any]) -> str:
    """The demo run's front as `search report RUN --format md` prints it."""
    return payload["front_markdown"].rstrip("\n")


def demo_run_markdown(payload: Mapping[str, Any]) -> str:
    """How the demo run went: trials, failures, hypervolume and time."""
    wall = payload["wall_seconds"]
    row = (
        f"`{payload['config']}`",
        payload["trials"],
        payload["failed"],
        f"{payload['hypervolume']:.4f}",
        _minutes(payload["trial_seconds"]),
        "-" if wall is None else _minutes(wall),
        payload["cpus"],
    )
    header = ("config", "trials", "failed", "hypervolume", "trial time (sum)", "`search run` wall time", "CPUs")
    return _table(header, [row])


def ready_teachers_markdown(payload: Mapping[str, Any]) -> str:
    """FP32 teachers of the ready configs and their uniform post-training quantizations."""
    widths = payload["bits"]
    header = ["config", "family", "parameters", "FP32 EER %"]
    header += [f"{bits}-bit EER %" for bits in widths] + [f"{widths[-1]}-bit compression"]
    rows = []
    for teacher in payload["teachers"]:
        points = teacher["points"]
        cells = [f"`{teacher['config']}`", teacher["family"], f"{teacher['params']:,}", f"{100 * points[0]['eer']:.2f}"]
        cells += [f"{100 * point['eer']:.2f}" for point in points[1:]]
        cells.append(f"{points[-1]['compression']:.2f}x")
        rows.append(cells)
    return _table(header, rows)


def cost_predictions_markdown(payload: Mapping[str, Any]) -> str:
    """The cost model's latency, peak memory and stored size per model and target, FP32 and 8-bit."""
    header = (
        "model", "config", "target", "FP32 ms", "8-bit ms", "FP32 peak MB", "8-bit peak MB", "FP32 stored MB",
        "8-bit stored MB",
    )
    rows = []
    for model in payload["models"]:
        for target, cost in model["targets"].items():
            fp32, int8 = cost["fp32"], cost["int8"]
            rows.append((
                model["label"],
                f"`{model['config']}`" + (" (full size)" if model["overrides"] else ""),
                target,
                f"{fp32['latency_ms']:.2f}",
                f"{int8['latency_ms']:.2f}",
                f"{fp32['peak_memory_bytes'] / 1e6:.2f}",
                f"{int8['peak_memory_bytes'] / 1e6:.2f}",
                f"{fp32['storage_bytes'] / 1e6:.3f}",
                f"{int8['storage_bytes'] / 1e6:.3f}",
            ))
    return _table(header, rows)


# Cost-model accuracy (benchmarks/cost_model_accuracy.py)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def cost_model_accuracy_markdown(payload: Mapping[str, Any]) -> str:
    """Validation-set accuracy per runtime, of the modelled profiles and the calibrated one."""
    machine, load = payload["machine"], payload["load_average_1min"]
    caption = (
        f"{payload['validation_models']} validation models, {payload['grid']} calibration grid; measured on "
        f"{machine['cpu']} ({', '.join(machine['cpu_flags'])}), onnxruntime {machine['onnxruntime_version']}, one "
        f"thread, per-thread CPU time; load average {load['start']:.1f} at the start, {load['end']:.1f} at the end."
    )
    header = (
        "runtime", "profile", "latency within ±10%", "within ±25%", "Spearman", "peak memory within ±10%",
        "within ±25%", "Spearman", "worst layer kinds (measured / predicted)",
    )
    rows = []
    for runtime, result in payload["runtimes"].items():
        for stage, figures in result["stages"].items():
            kinds = ", ".join(f"{kind['op']} {kind['ratio']:.2f}x" for kind in figures["worst_kinds"][:3])
            rows.append((
                runtime, stage, _percent(figures["within_10pct"]), _percent(figures["within_25pct"]),
                f"{figures['spearman']:.3f}", _percent(figures["memory_within_10pct"]),
                _percent(figures["memory_within_25pct"]), f"{figures['memory_spearman']:.3f}", kinds,
            ))  # fmt: skip
    return caption + "\n\n" + _table(header, rows)


def cost_model_targets_markdown(payload: Mapping[str, Any]) -> str:
    """Issue #23's accuracy targets against the calibrated profiles."""
    rows = ((name, _met(check["met"]), f"{check['value']:.3f}") for name, check in payload["targets"].items())
    return _table(("target (calibrated)", "met", "value"), rows)


def cost_model_runs_markdown(*payloads: Mapping[str, Any]) -> str:
    """Issue #23's targets in each of several runs of the benchmark (the host's load moves them)."""
    names = [name for name in payloads[0]["targets"] if all(name in payload["targets"] for payload in payloads)]
    rows = [
        ("load average (start, end)", *(f"{p['load_average_1min']['start']:.1f}, {p['load_average_1min']['end']:.1f}" for p in payloads)),
        *(
            (name, *(f"{p['targets'][name]['value']:.3f} ({_met(p['targets'][name]['met'])})" for p in payloads))
            for name in names
        ),
    ]
    return _table(("target (calibrated)", *(f"run {index}" for index in range(1, len(payloads) + 1))), rows)


def ge2e_pretrained_markdown(payload: Mapping[str, Any]) -> str:
    """The engine's GE2E pipeline against resemblyzer's on the same trials, and checkpoint load times."""
    utterances = payload["utterances"]
    pipelines = (
        (name, f"{100 * run['eer']:.2f} ({100 * run['eer_low']:.2f}-{100 * run['eer_high']:.2f})", f"{run['seconds']:.1f}")
        for name, run in payload["pipelines"].items()
    )
    difference, cosine = payload["eer_difference_interval"], payload["embedding_cosine"]
    agreement = [
        ("speakers / utterances", f"{payload['speakers']} / {utterances:,}"),
        ("trials (target)", f"{payload['trials']:,} ({payload['target_trials']:,})"),
        (
            f"EER difference, engine - resemblyzer ({100 * payload['confidence']:.0f}% paired interval, points)",
            f"[{100 * difference['low']:.2f}, {100 * difference['high']:.2f}]",
        ),
        ("embedding cosine, lowest / median", f"{cosine['min']:.6f} / {cosine['median']:.6f}"),
    ]
    loads = (
        (name, load["family"], f"{load['megabytes']:.1f}", f"{load['seconds']:.3f}")
        for name, load in payload["load_seconds"].items()
    )
    return "\n\n".join([
        _table(("pipeline", "EER % (95% CI)", f"seconds to embed {utterances:,} utterances"), pipelines),
        _table(("agreement", "value"), agreement),
        _table(("checkpoint format", "family", "MB", "load seconds"), loads),
    ])


def ge2e_table_markdown(payload: Mapping[str, Any]) -> str:
    """GE2E at 8, 4 and 3 bits against FP32 on the same trials, and issue #21's targets."""
    rows = (
        (
            row["label"] + (f" ({_bit_mix(row['bits'])})" if "bits" in row else ""),
            row["method"] + (f", mean of {len(row['seed_eers'])} seeds ({_seed_eers(row)})" if "seed_eers" in row else ""),
            f"{row['mean_weight_bits']:.2f}",
            f"{row['size_bytes'] / 1e3:,.0f}",
            f"{100 * row['eer']:.2f} ({100 * row['eer_low']:.2f}-{100 * row['eer_high']:.2f})",
            f"[{100 * row['difference_low']:+.2f}, {100 * row['difference_high']:+.2f}]",
            f"{100 * row['relative_to_fp32']:+.1f}%",
        )
        for row in payload["rows"]
    )
    targets = (
        (
            f"<= {target['max_mean_bits']} mean bits within +{100 * target['bound']:.0f}% relative"
            + (" (or inside FP32's interval)" if name == "8_bit" else ""),
            "with" if labelled else "without",
            f"{target['label']}, {target['method']}",
            f"{100 * target['relative_to_fp32']:+.1f}%",
            _met(target["met"]),
        )
        for labelled, key in ((False, "targets"), (True, "targets_with_labels"))
        for name, target in payload[key].items()
    )
    search = payload["search"]
    facts = [
        ("evaluation set", payload["eval_set"]),
        ("trials (target)", f"{payload['trials']:,} ({payload['target_trials']:,})"),
        ("fine-tuning data", payload["fine_tuning_data"]),
        ("QAT steps (rows), learning rate", f"{payload['steps']}, {payload['fidelity']['learning_rate']:g}"),
        ("search", f"{search['trials']} trials ({search['failed']} failed), front of {search['front']}, "
                   f"ladder {search['fidelity_steps']}, {_minutes(search['wall_seconds'])}"),
    ]
    confidence = f"{100 * payload['confidence']:.0f}%"
    return "\n\n".join([
        _table(("what", "value"), facts),
        _table(("model", "method", "mean bits", "kB", f"EER % ({confidence} CI)",
                f"Δ vs FP32, points ({confidence} paired)", "relative"), rows),
        _table(("target", "AN4 labels", "best model", "relative", "met"), targets),
    ])


def _seed_eers(row: Mapping[str, Any]) -> str:
    """Each seed's EER of a row measured over several seeds, e.g. "12.18 / 12.05 / 11.95 %"."""
    return " / ".join(f"{100 * value:.2f}" for value in row["seed_eers"]) + " %"


def _bit_mix(bits: Mapping[str, int]) -> str:
    """Per-matrix bits in model order, e.g. "8/4/4/4/4/4/8" (lstm.l0.ih ... linear)."""
    return "/".join(str(value) for value in bits.values())


# Integer bundles against FP32 (benchmarks/bundle_speed.py)


def bundle_speed_markdown(payload: Mapping[str, Any]) -> str:
    """FP32 and integer (QDQ) bundle latency per family and size, integer kernels and agreement."""
    machine, load, pair = payload["machine"], payload["load_average_1min"], payload["pair_saturation"]
    caption = (
        f"Measured on {machine['cpu']} ({', '.join(machine['cpu_flags'])}), onnxruntime {machine['onnxruntime_version']}, "
        f"one thread, per-thread CPU time, ms per second of input at the run's least loaded reference speed; load "
        f"average {load['start']:.1f} at the start, {load['end']:.1f} at the end; noise: the larger of the runs' relative "
        f"interquartile range and the spread of the round medians, of either graph. A convolution whose two products "
        f"both reach 255 x 127 returns {pair['onnxruntime']:g} for {pair['expected']:g} with full-range weights on this CPU."
    )
    header = (
        "family", "size", "FP32 ms", "int8 ms", "speedup", "noise", "integer kernels", "left weight-only",
        "cosine to in-run", "cosine, full-range s8 weights",
    )
    rows = (
        (
            row["family"], row["size"], f"{row['fp32_ms']:.2f}", f"{row['int8_ms']:.2f}", f"{row['speedup']:.2f}x",
            _percent(row["noise"]), f"{row['integer_kernels']} of {row['quantized_layers']}",
            "; ".join(f"{count}: {reason}" for reason, count in row["weight_only"].items()) or "-",
            f"{row['in_run']['cosine']:.5f}", f"{row['full_range_signed_weights']['cosine']:.5f}",
        )
        for row in payload["rows"]
    )  # fmt: skip
    return caption + "\n\n" + _table(header, rows)


def bundle_speed_targets_markdown(payload: Mapping[str, Any]) -> str:
    """Issue #24's speed targets: integer bundles against FP32."""
    rows = ((name, _met(check["met"]), f"{check['value']:.2f}x") for name, check in payload["targets"].items())
    return _table(("target", "met", "speedup"), rows)


WALL_SECONDS = {
    "demo_front": "wall_seconds",
    "ready_teachers": "wall_seconds",
    "quant_table": "wall_seconds",
    "kd_table": "wall_seconds",
    "search_efficiency": "wall_seconds",
    "an4_eer": "seconds",
    "extraction_teacher": "prepare_seconds",
    "extraction_table": "wall_seconds",
    "ge2e_table": "wall_seconds",
}
"""Where each benchmark's JSON records how long it took."""


def benchmark_costs_markdown(*payloads: Mapping[str, Any]) -> str:
    """Wall time of each benchmark's last run, one per source of `WALL_SECONDS`, in that order."""
    rows = []
    for (name, key), payload in zip(WALL_SECONDS.items(), payloads):
        seconds = payload.get(key)
        rows.append((f"`benchmarks/{name}.py`", "-" if seconds is None else _minutes(seconds)))
    return _table(("benchmark", "wall time of the run the JSON holds"), rows)


@dataclass(frozen=True)
class Table:
    """A generated table: the JSON files it reads (stems under results/benchmarks/) and its renderer."""

    sources: tuple[str, ...]
    render: Callable[..., str]


SEEDED_SPACES = tuple(f"search_efficiency_seeds-{space}" for space in ("demo-layer", "resnet", "ecapa"))
"""The per-space `search_efficiency.py --seeds 0 1 2` runs over every per-layer space."""

TABLES: dict[str, Table] = {
    "quant_table": Table(("quant_table",), quant_table_markdown),
    "kd_table": Table(("kd_table",), kd_table_markdown),
    "kd_targets": Table(("kd_table",), kd_targets_markdown),
    "extraction_teacher": Table(("extraction_teacher",), extraction_teacher_markdown),
    "extraction_table": Table(("extraction_table",), extraction_table_markdown),
    "extraction_targets": Table(("extraction_table",), extraction_targets_markdown),
    "search_efficiency": Table(("search_efficiency",), search_efficiency_spaces_markdown),
    "search_efficiency_targets": Table(("search_efficiency",), search_efficiency_spaces_targets_markdown),
    "search_efficiency_seeds": Table(
        SEEDED_SPACES, lambda *payloads: search_efficiency_spaces_markdown(search_efficiency_seeds(*payloads))
    ),
    "search_efficiency_seeds_targets": Table(
        SEEDED_SPACES, lambda *payloads: search_efficiency_spaces_targets_markdown(search_efficiency_seeds(*payloads))
    ),
    "an4_eer": Table(("an4_eer",), an4_eer_markdown),
    "an4_sets": Table(("an4_eer",), an4_sets_markdown),
    "bundle_latency": Table(("bundle_latency",), bundle_latency_markdown),
    "bundle_checks": Table(("bundle_latency",), bundle_checks_markdown),
    "demo_front": Table(("demo_front",), demo_front_markdown),
    "demo_run": Table(("demo_front",), demo_run_markdown),
    "ready_teachers": Table(("ready_teachers",), ready_teachers_markdown),
    "cost_predictions": Table(("cost_predictions",), cost_predictions_markdown),
    "cost_model_accuracy": Table(("cost_model_accuracy",), cost_model_accuracy_markdown),
    "cost_model_targets": Table(("cost_model_accuracy",), cost_model_targets_markdown),
    "cost_model_runs": Table(
        ("cost_model_accuracy", "cost_model_accuracy-repeat", "cost_model_accuracy-run3"), cost_model_runs_markdown
    ),
    "ge2e_pretrained": Table(("ge2e_pretrained",), ge2e_pretrained_markdown),
    "ge2e_table": Table(("ge2e_table",), ge2e_table_markdown),
    "benchmark_costs": Table(tuple(WALL_SECONDS), benchmark_costs_markdown),
    "bundle_speed": Table(("bundle_speed",), bundle_speed_markdown),
    "bundle_speed_targets": Table(("bundle_speed",), bundle_speed_targets_markdown),
}


class Results:
    """The JSON files of a results folder, each read once, on first use."""

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, stem: str) -> Any:
        if stem not in self._loaded:
            path = self.folder / f"{stem}.json"
            try:
                self._loaded[stem] = json.loads(path.read_text())
            except FileNotFoundError:
                raise RenderError(f"{shown(path)}: missing; run benchmarks/{stem}.py to write it") from None
        return self._loaded[stem]


def write_result(path: Path, payload: Any) -> None:
    """Write a benchmark's JSON, the file its tables are rendered from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {shown(path)}")


def render_table(name: str, results: Results) -> str:
    """The Markdown of table `name`, rendered from its JSON files."""
    if name not in TABLES:
        raise RenderError(f"table:{name}: unknown table; known: {', '.join(TABLES)}")
    table = TABLES[name]
    payloads = [results[stem] for stem in table.sources]
    try:
        return table.render(*payloads).rstrip("\n") + "\n"
    except KeyError as error:
        raise RenderError(f"table:{name}: {', '.join(table.sources)} JSON lacks key {error}") from None


def render_page(text: str, results: Results) -> tuple[str, list[str]]:
    """`text` with every marked table rewritten from its JSON, and why any table could not be
    (those keep their old text)."""
    errors = []

    def rewrite(match: re.Match) -> str:
        try:
            return match["open"] + render_table(match["name"], results) + match["close"]
        except RenderError as error:
            errors.append(str(error))
            return match[0]

    return MARKER.sub(rewrite, text), errors


def stale_tables(paths: Sequence[Path], results: Results) -> list[str]:
    """`page: table` for every marked table whose text differs from what its JSON renders to
    (or that cannot be rendered, with the reason)."""
    stale = []
    for path in paths:
        text = path.read_text()
        matches = list(MARKER.finditer(text))
        if len(matches) != len(OPENING_LINE.findall(text)):
            stale.append(f"{shown(path)}: a `{OPENING}` marker without its `{CLOSING}` (or not alone on its line)")
        for match in matches:
            where = f"{shown(path)}: {match['name']}"
            try:
                if match["body"] != render_table(match["name"], results):
                    stale.append(where)
            except RenderError as error:
                stale.append(f"{where} ({error})")
    return stale


def shown(path: Path) -> Path:
    """`path` relative to the repository when it lies inside it (for messages and JSON)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing the stale tables")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the benchmark JSON files")
    args = parser.parse_args(argv)
    results = Results(args.results)
    if args.check:
        stale = stale_tables(pages(), results)
        for line in stale:
            print(f"stale: {line}")
        return 1 if stale else 0
    failed = False
    for path in pages():
        text = path.read_text()
        rendered, errors = render_page(text, results)
        for error in errors:
            print(f"error: {shown(path)}: {error}", file=sys.stderr)
        failed = failed or bool(errors)
        if rendered != text:
            path.write_text(rendered)
            print(f"rewrote {shown(path)}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
