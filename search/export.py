"""`search export`: rebuild one trial of a run and write its deployment bundle.

The trial is chosen by number or by a selection (`search.selection`), then rebuilt exactly as
the search measured it: the run's config is loaded, `prepare` reads the cached teacher and
features, and the evaluator runs the trial's candidate up to the fidelity rung its row records.
The rebuilt model must pack to the row's `size_bytes`, or the export stops: the code or the
cache changed since the run, and the bundle would not be the model the report showed.

The bundle (`spaces.bundle`) gets the packed weights as they are, a config.json with the
metrics re-measured on the rebuilt model (with a bootstrap confidence interval: of the EER for
speaker verification, of the mean SI-SDRi over the test mixtures for speaker extraction) and the
cost model's prediction on every target, the ONNX graph exported from the model that
`load_bundle` rebuilds from those two files, and the model card rendered from them. What differs
between the tasks (input/output signature, quality interval, evaluation record, card text) comes from
the run's `search.tasks.Task`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from evaluators.evaluation import Evaluation
from hwcost import available_targets
from search.config import RunConfig, load_config
from search.model_card import render_model_card
from search.onnx_export import export_onnx
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from search.run_dir import RunDirectory
from search.selection import Selection
from search.tasks import Task, get_task
from search.tasks.base import BOOTSTRAP_REPLICATES
from search.tasks.verification_bundle import ExportMismatch
from search.trial import RUNG, measure
from spaces.bundle import (
    MODEL_CARD_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    example_inputs,
    load_bundle,
    weights_digest,
    write_bundle_config,
)
from spaces.compress import CompressedModel, ModelSpec
from spaces.description import FLOAT_BITS
from spaces.plan import CompressionPlan, LayerQuantization
from spaces.quant import QuantizedWeight, unpack_weights
from spaces.students import student_spec

BUNDLES_DIR = "bundles"
"""Default home of a run's bundles: `RUN/bundles/trial-NNNN/`."""

_COMPLETE = "complete"


class ExportError(ValueError):
    """A trial that cannot be exported (unknown, failed, or not rebuilt as recorded)."""


@dataclass(frozen=True)
class ExportedBundle:
    """What `search export` wrote."""

    path: Path
    trial: int
    selection: str
    size_bytes: int
    metrics: dict[str, float]
    task: str

    def summary(self) -> str:
        """One line: the trial, its size and its quality with the confidence interval."""
        quality = get_task(self.task).summary(self.metrics)
        return f"trial {self.trial} ({self.selection}): {self.size_bytes:,} bytes, {quality}"


def choose_trial(
    rows: list[dict[str, Any]], config: RunConfig, trial: int | None = None, pick: str | None = None
) -> tuple[dict[str, Any], str]:
    """The row to export and how it was chosen (`--trial N` or `--pick "..."`); exactly one of the two."""
    if (trial is None) == (pick is None):
        raise ExportError("give exactly one of --trial N and --pick SELECTION")
    if pick is not None:
        selection = Selection.parse(pick, get_task(config.task).run_metric_names(config))
        return dict(selection.choose(rows, config.objectives)), f'--pick "{pick}"'
    complete = [row for row in rows if row.get("status") == _COMPLETE]
    for row in complete:
        if row.get("trial") == trial:
            return row, f"--trial {trial}"
    numbers = sorted(row["trial"] for row in complete)
    raise ExportError(f"trial {trial}: not a completed trial of this run; completed: {numbers[:30]}")


def export_bundle(
    run_path: str | os.PathLike,
    trial: int | None = None,
    pick: str | None = None,
    out: str | os.PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportedBundle:
    """Rebuild the chosen trial of the run in `run_path` and write its bundle to `out`.

    Args:
        trial: Trial number to export.
        pick: Selection expression (see `search.selection`), instead of `trial`.
        out: Bundle folder (must not exist or be empty); default `RUN/bundles/trial-NNNN`.
        progress: Preparation progress callback (stage, done, total).

    Raises:
        ExportError, SelectionError, ConfigError, RunDirectoryError: With the file, trial or key at fault.
    """
    run_dir = RunDirectory(run_path)
    reference = run_dir.read_reference()
    config = load_config(run_dir.path / RUN_CONFIG_FILE)
    row, selection = choose_trial(run_dir.read_trials(), config, trial, pick)
    folder = Path(out) if out is not None else run_dir.path / BUNDLES_DIR / f"trial-{int(row['trial']):04d}"
    if folder.exists() and any(folder.iterdir()):
        raise ExportError(f"{folder}: already exists and is not empty; remove it or choose --out")
    task = get_task(config.task)
    evaluator = task.evaluator()
    prepared = evaluator.prepare(task.setup(config), progress)
    candidate = prepared.space.candidate_from_row(row)
    try:
        plan = prepared.space.plan(candidate)
    except ValueError as error:
        raise ExportError(f"trial {row['trial']}: its knobs no longer fit the run's space: {error}") from None
    if plan.activation_bits != FLOAT_BITS:  # the evaluator applies them outside the model's modules
        raise ExportError(
            f"trial {row['trial']}: {plan.activation_bits}-bit activations cannot be rebuilt from a bundle yet; "
            "export a trial with FP32 activations"
        )
    evaluation = _rebuild(evaluator, candidate, prepared, row)
    targets = [*config.targets, *(target for target in available_targets() if target not in config.targets)]
    metrics = {  # the run's first target first, so unsuffixed costs mean what they mean in the run
        **measure(evaluation, targets, float(reference["size_bytes"])),
        **_quality_interval(task, evaluation, prepared),
    }
    source = {
        "run": str(run_dir.path.resolve()),
        "trial": int(row["trial"]),
        "rung": row.get(RUNG),
        "selection": selection,
        "candidate": candidate,
    }
    bundle_config = _bundle_config(
        config,
        _built_spec(prepared.spec, plan),
        plan,
        evaluation.compressed,
        metrics,
        source,
        _evaluation_record(config, prepared, reference),
    )
    _write_bundle(folder, bundle_config, evaluation.compressed.packed)
    return ExportedBundle(folder, int(row["trial"]), selection, bundle_config.size_bytes, metrics, config.task)


def _write_bundle(folder: Path, config: BundleConfig, packed: bytes) -> None:
    """weights.bin and config.json, then the ONNX graph and card of the model those two rebuild.

    Written to a sibling `.partial` folder renamed into place at the end, so a failed export
    leaves no bundle that looks complete.
    """
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / WEIGHTS_FILE).write_bytes(packed)
    write_bundle_config(partial, config)
    bundle = load_bundle(partial)
    graph = export_onnx(
        bundle.model,
        bundle.quantized,
        example_inputs(config),
        [spec.name for spec in config.outputs],
        {spec.name: spec.dynamic_axes for spec in (*config.inputs, *config.outputs)},
    )
    onnx.save(graph, partial / ONNX_FILE)
    (partial / MODEL_CARD_FILE).write_text(render_model_card(bundle.config, bundle.compressed.description, get_task(config.task).card))
    if folder.exists():
        folder.rmdir()  # empty: checked before the export started
    os.replace(partial, folder)


def _rebuild(evaluator: Any, candidate: Mapping[str, Any], prepared: Any, row: Mapping[str, Any]) -> Evaluation:
    """The trial's model at the fidelity rung its row was measured at (the last when unrecorded)."""
    wanted = row.get(RUNG)
    for rung, (_, evaluation) in enumerate(evaluator.evaluate_ladder(candidate, prepared)):
        if rung == wanted:
            break
    else:
        if wanted is not None:
            raise ExportError(f"trial {row['trial']}: rung {wanted} is beyond the run's fidelity ladder")
    size = len(evaluation.compressed.packed)
    if size != int(row["size_bytes"]):
        raise ExportError(
            f"trial {row['trial']}: the rebuilt model packs to {size} bytes but trials.jsonl records "
            f"size_bytes={int(row['size_bytes'])}; the code or the cache changed since the run"
        )
    return evaluation


def _quality_interval(task: Task, evaluation: Evaluation, prepared: Any) -> dict[str, float]:
    """The task's confidence interval; re-scoring that disagrees with the evaluator stops the export."""
    try:
        return task.quality_interval(evaluation, prepared)
    except ExportMismatch as error:
        raise ExportError(str(error)) from None


def _built_spec(teacher: ModelSpec, plan: CompressionPlan) -> ModelSpec:
    """The spec of the model the plan builds: the teacher's, or its student's."""
    return teacher if plan.student is None else student_spec(teacher, plan.student)


def _bundle_config(
    config: RunConfig,
    spec: ModelSpec,
    plan: CompressionPlan,
    compressed: CompressedModel,
    metrics: Mapping[str, float],
    source: Mapping[str, Any],
    evaluation: Mapping[str, Any],
) -> BundleConfig:
    """config.json of the rebuilt model: its layers as stored in the packed file, its I/O, its provenance."""
    features, inputs, outputs = get_task(config.task).bundle_signature(config, spec, compressed.model)
    stored = unpack_weights(compressed.packed)
    layers = {
        key.removesuffix(".weight"): LayerQuantization(entry.bits, entry.quantizer)
        for key, entry in stored.items()
        if isinstance(entry, QuantizedWeight)
    }
    return BundleConfig(
        task=config.task,
        family=spec.family,
        model_arguments=dict(spec.kwargs),
        sample_rate=spec.sample_rate,
        features=features,
        layers=layers,
        inputs=inputs,
        outputs=outputs,
        size_bytes=len(compressed.packed),
        weights_sha256=weights_digest(compressed.packed),
        share_repeated_blocks=plan.share,
        activation_bits=plan.activation_bits,
        side_bits=spec.side_bits,
        source=dict(source),
        evaluation=dict(evaluation),
        metrics=dict(metrics),
    )


def _evaluation_record(config: RunConfig, prepared: Any, reference: Mapping[str, Any]) -> dict[str, Any]:
    """How the bundle's metrics were measured: data, test set, seed, targets, the FP32 reference."""
    task = get_task(config.task)
    resolved = config.to_dict()
    return {
        "data": resolved["data"],
        **task.evaluation_record(config, prepared),
        "seed": config.seed,
        "teacher": resolved["teacher"],
        "bootstrap_replicates": BOOTSTRAP_REPLICATES,
        "run_targets": list(config.targets),
        "cost_targets": available_targets(),
        "reference": {key: reference[key] for key in (*task.quality_metrics, "size_bytes") if key in reference},
    }


__all__ = ["BUNDLES_DIR", "ExportError", "ExportedBundle", "choose_trial", "export_bundle"]
