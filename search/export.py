"""`search export`: rebuild one trial of a run from its kept model and write its deployment bundle.

The trial is chosen by number or by a selection (`search.selection`), then rebuilt from the
artifact the search kept of it (`search.artifacts`): the packed weights the worker measured at
the rung its row records, which must be as long as the row's `size_bytes` and rebuild a model
that packs back to the same bytes. Nothing is trained again; the run's evaluation data (from
the evaluator's `prepare`, which reads the cached features and teacher) is only scored.

The bundle (`spaces.bundle`) gets the packed weights as they are, a config.json with the
metrics re-measured on the rebuilt model (with a bootstrap confidence interval: of the EER for
speaker verification, of the mean SI-SDRi over the test mixtures for speaker extraction) and the
cost model's prediction on every target and the task's decision thresholds (speaker verification:
calibrated on half of the test speakers, `search.tasks.verification_threshold`), the ONNX graph
exported from the model that `load_bundle` rebuilds from those two files, the model card rendered
from them, and the task's own files (speaker verification: `runner.py`, `spaces.bundle_runner`).
What differs between the tasks (input/output signature, quality interval, decision, evaluation
record, card text, files) comes from the run's `search.tasks.Task`.
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
from search.artifacts import TrialArtifact, artifact_trial, read_artifact
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from search.run_dir import MissingArtifactError, RunDirectory
from search.selection import Selection
from search.tasks import Task, get_task
from search.tasks.base import BOOTSTRAP_REPLICATES, TaskExportError
from search.trial import STEPS, measure
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
from spaces.compress import CompressedModel, PackedModelError
from spaces.description import FLOAT_BITS
from spaces.plan import LayerQuantization
from spaces.quant import QuantizedWeight, unpack_weights
from spaces.quant.integer_activations import activation_quantizers

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
    """Rebuild the chosen trial of the run in `run_path` from its artifact and write its bundle to `out`.

    Export never trains: a trial whose model the run did not keep (`search.keep_artifacts: none`,
    a trial pruned off the front, a run from before artifacts) is an `ExportError` that says so
    and how to get one.

    Args:
        trial: Trial number to export.
        pick: Selection expression (see `search.selection`), instead of `trial`.
        out: Bundle folder (must not exist or be empty); default `RUN/bundles/trial-NNNN`.
        progress: Progress callback (stage, done, total): reading the artifact, the evaluation
            data, measuring, exporting ONNX.

    Raises:
        ExportError, SelectionError, ConfigError, RunDirectoryError: With the file, trial or key at fault.
    """
    run_dir = RunDirectory.existing(run_path)
    reference = run_dir.read_reference()
    config = load_config(run_dir.path / RUN_CONFIG_FILE)
    row, selection = choose_trial(run_dir.read_trials(), config, trial, pick)
    try:
        get_task(config.task).check_exportable(config)
    except TaskExportError as error:
        raise ExportError(f"trial {row['trial']}: {error}") from None
    folder = Path(out) if out is not None else run_dir.path / BUNDLES_DIR / f"trial-{int(row['trial']):04d}"
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: a file; --out names the bundle folder to write")
    if folder.exists() and any(folder.iterdir()):
        raise ExportError(f"{folder}: already exists and is not empty; remove it or choose --out")
    artifact = _kept_artifact(run_dir, config, row)
    report = progress or (lambda stage, done, total: None)
    report("reading artifact", 0, 1)
    compressed = _rebuild(artifact)
    report("reading artifact", 1, 1)
    task = get_task(config.task)
    evaluator = task.evaluator()
    prepared = evaluator.prepare(task.setup(config), progress)
    report("measuring (metrics)", 0, 2)
    evaluation = evaluator.evaluate_compressed(compressed, prepared)
    targets = [*config.targets, *(target for target in available_targets() if target not in config.targets)]
    measured = measure(evaluation, targets, float(reference["size_bytes"]))
    report("measuring (confidence interval, decision threshold)", 1, 2)
    # the run's first target first, so unsuffixed costs mean what they mean in the run
    metrics = {**measured, **_quality_interval(task, evaluation, prepared)}
    decision = _decision(task, evaluation, prepared)
    report("measuring", 2, 2)
    source = {
        "run": str(run_dir.path.resolve()),
        "trial": int(row["trial"]),
        "rung": artifact.rung,
        "selection": selection,
        "candidate": artifact.candidate,
    }
    bundle_config = _bundle_config(
        config, artifact, compressed, metrics, source, _evaluation_record(config, prepared, reference), decision
    )
    report("exporting ONNX", 0, 1)
    _write_bundle(folder, bundle_config, artifact.packed, task.bundle_files)
    report("exporting ONNX", 1, 1)
    return ExportedBundle(folder, int(row["trial"]), selection, bundle_config.size_bytes, metrics, config.task)


def _write_bundle(folder: Path, config: BundleConfig, packed: bytes, files: Mapping[str, Path]) -> None:
    """weights.bin and config.json, then the ONNX graph and card of the model those two rebuild,
    and the task's `files` (bundle file name -> source file to copy).

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
    for name, source in files.items():
        shutil.copyfile(source, partial / name)
    if folder.exists():
        folder.rmdir()  # empty: checked before the export started
    os.replace(partial, folder)


def _kept_artifact(run_dir: RunDirectory, config: RunConfig, row: Mapping[str, Any]) -> TrialArtifact:
    """The artifact the run kept of the row's trial, which must be the model the row measured (its
    rung and size)."""
    number = int(row["trial"])
    try:
        artifact = read_artifact(run_dir, artifact_trial(row))
    except MissingArtifactError:
        raise ExportError(
            f"trial {number}: the run kept no model of it (search.keep_artifacts is "
            f"{config.search.keep_artifacts!r}; `front` keeps only the front's, and runs made before artifacts "
            f"keep none); export never retrains: export a trial it kept {run_dir.artifact_trials()[:30]}, or "
            "run the search again with search.keep_artifacts: all"
        ) from None
    if STEPS in row and artifact.steps != row[STEPS]:
        raise ExportError(
            f"trial {number}: its kept model is of rung {artifact.rung} ({artifact.steps} fine-tuning steps) but "
            f"trials.jsonl records {row[STEPS]} steps"
        )
    if len(artifact.packed) != int(row["size_bytes"]):
        raise ExportError(
            f"trial {number}: its kept model packs to {len(artifact.packed)} bytes but trials.jsonl records "
            f"size_bytes={int(row['size_bytes'])}"
        )
    return artifact


def _rebuild(artifact: TrialArtifact) -> CompressedModel:
    """The trial's compressed model from its kept weights alone, its activation quantizers included.

    Quantized activations rebuild only from the steps the weights store (every evaluator packs
    them); a trial of a run from before they were stored is refused.
    """
    try:
        compressed = artifact.rebuild()
    except PackedModelError as error:
        raise ExportError(
            f"trial {artifact.trial}: its kept weights no longer rebuild its model ({error}); "
            "the model code changed since the run"
        ) from None
    if artifact.activation_bits != FLOAT_BITS and not activation_quantizers(compressed.model):
        raise ExportError(
            f"trial {artifact.trial}: its kept weights store no steps of its {artifact.activation_bits}-bit activations "
            "(a run from before they were stored), so a bundle cannot rebuild them; "
            "run the search again, or export a trial with FP32 activations"
        )
    return compressed


def _quality_interval(task: Task, evaluation: Evaluation, prepared: Any) -> dict[str, float]:
    """The task's confidence interval; re-scoring that disagrees with the evaluator stops the export."""
    try:
        return task.quality_interval(evaluation, prepared)
    except TaskExportError as error:
        raise ExportError(str(error)) from None


def _decision(task: Task, evaluation: Evaluation, prepared: Any) -> dict[str, Any]:
    """The task's calibrated decision block; evaluation data too small to calibrate on stops the export."""
    try:
        return task.decision(evaluation, prepared)
    except TaskExportError as error:
        raise ExportError(str(error)) from None


def _bundle_config(
    config: RunConfig,
    artifact: TrialArtifact,
    compressed: CompressedModel,
    metrics: Mapping[str, float],
    source: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    decision: Mapping[str, Any],
) -> BundleConfig:
    """config.json of the rebuilt model: its layers as stored in the packed file, its I/O, its provenance."""
    spec = artifact.spec
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
        share_repeated_blocks=artifact.share_repeated_blocks,
        activation_bits=artifact.activation_bits,
        side_bits=spec.side_bits,
        source=dict(source),
        evaluation=dict(evaluation),
        metrics=dict(metrics),
        decision=dict(decision),
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
