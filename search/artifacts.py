"""Trial artifacts: the model each kept trial measured, so that nothing has to train it again.

After every rung it measures, a worker sends the trial's packed weights, with what rebuilds the
model from them (a `TrialArtifact`), through an `ArtifactChannel` to the `ArtifactKeeper`: a Ray
actor pinned to the driver's node, which writes them into the run directory
(`RunDirectory.write_artifact`). So the run directory needs no storage shared with the workers,
and the weights stay out of the reported metrics, which Ray Tune logs to every logger it has.
The worker waits until its artifact is written before it reports the rung, so the row the driver
records always finds its artifact on disk; a later rung (or a retried attempt) replaces it, so a
trial's artifact is the rung its row records.

`search.keep_artifacts` says which artifacts the run keeps (`prune_artifacts`, after every
finished trial): `front` those of the current Pareto front's members (a trial still running keeps
its own until it is recorded: it may enter the front), `all` those of every completed or stopped
trial, `none` none at all (no channel is opened). A trial that reused an earlier measurement
(`search.reuse`) trained nothing and sent nothing: its model is the artifact of the trial it
reused (`artifact_trial`), which is kept as long as either row needs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.evaluation import Evaluation, Prepared
from search.run_config import KEEP_ARTIFACTS
from search.run_dir import RunDirectory, RunDirectoryError
from search.trial import REUSED_FROM
from search.trial_rows import COMPLETE, STOPPED
from spaces.compress import CompressedModel, ModelSpec, rebuild_compressed
from spaces.plan import CompressionPlan
from spaces.students import student_spec

KEEP_FRONT, KEEP_ALL, KEEP_NONE = KEEP_ARTIFACTS


@dataclass(frozen=True)
class TrialArtifact:
    """What rebuilds the model one trial measured, without training it again.

    Attributes:
        trial: The trial number.
        rung: The fidelity-ladder rung the model was measured at (0 = first).
        steps: Cumulative fine-tuning steps of that rung.
        candidate: The trial's knobs.
        spec: The model the packed weights fit: the run's, or the student the candidate trains.
        share_repeated_blocks: Repeated blocks share one set of weights (`spaces.sharing`).
        activation_bits: Bits of the activations the trial was measured with (32: float).
        packed: The packed weights file, byte for byte (its length is the row's `size_bytes`).
    """

    trial: int
    rung: int
    steps: int
    candidate: dict[str, Any]
    spec: ModelSpec
    share_repeated_blocks: bool
    activation_bits: int
    packed: bytes

    @classmethod
    def measured(
        cls, trial: int, rung: int, steps: int, candidate: Mapping[str, Any], prepared: Prepared, evaluation: Evaluation
    ) -> TrialArtifact:
        """The artifact of a rung a trial just measured."""
        plan = prepared.space.plan(candidate)
        spec = built_spec(prepared.spec, plan)
        packed = evaluation.compressed.packed
        return cls(trial, rung, steps, dict(candidate), spec, plan.share, plan.activation_bits, packed)

    def rebuild(self) -> CompressedModel:
        """The trial's compressed model, from its packed weights alone (they must pack back to the same
        bytes), with the activation quantizers whose steps they store.

        Raises:
            PackedModelError: The weights do not fit the spec (the model code changed since the run).
        """
        return rebuild_compressed(self.spec, self.packed, self.share_repeated_blocks, self.activation_bits)


def built_spec(spec: ModelSpec, plan: CompressionPlan) -> ModelSpec:
    """The spec of the model a plan builds from the run's `spec`: that one, or its student."""
    return spec if plan.student is None else student_spec(spec, plan.student)


def write_artifact(run_dir: RunDirectory, artifact: TrialArtifact) -> None:
    """Keep the artifact in the run directory, replacing the trial's earlier one."""
    manifest = {field.name: getattr(artifact, field.name) for field in _MANIFEST_FIELDS}
    run_dir.write_artifact(artifact.trial, {**manifest, "spec": dataclasses.asdict(artifact.spec)}, artifact.packed)


def read_artifact(run_dir: RunDirectory, trial: int) -> TrialArtifact:
    """The trial's kept artifact.

    Raises:
        MissingArtifactError: The run keeps none for the trial.
        RunDirectoryError: The artifact is corrupt or half-written.
    """
    manifest, packed = run_dir.read_artifact(trial)
    try:
        values = {field.name: manifest[field.name] for field in _MANIFEST_FIELDS}
        return TrialArtifact(**values, spec=ModelSpec(**manifest["spec"]), packed=packed)
    except (KeyError, TypeError, ValueError) as error:
        raise RunDirectoryError(f"{run_dir.artifacts_dir}: trial {trial}'s manifest is corrupt ({error!r})") from None


_MANIFEST_FIELDS = tuple(field for field in dataclasses.fields(TrialArtifact) if field.name not in ("spec", "packed"))
"""The artifact's fields stored as they are in its manifest (the spec is stored as a dict, the weights beside it)."""


def artifact_trial(row: Mapping[str, Any]) -> int:
    """The trial whose artifact holds a row's model: the row's own, or the one it reused."""
    return int(row.get(REUSED_FROM, row["trial"]))


def prune_artifacts(
    run_dir: RunDirectory, rows: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]], keep: str
) -> None:
    """Remove the artifacts of recorded trials the run does not keep (see the module docstring)."""
    if keep == KEEP_FRONT:
        kept = {artifact_trial(row) for row in front}
    elif keep == KEEP_ALL:
        kept = {artifact_trial(row) for row in rows if row.get("status") in (COMPLETE, STOPPED)}
    else:
        kept = set()
    recorded = {row.get("trial") for row in rows}
    for trial in run_dir.artifact_trials():
        if trial in recorded and trial not in kept:
            run_dir.remove_artifact(trial)


class ArtifactKeeper:
    """The driver's end of the channel: writes what the workers send, one artifact at a time."""

    def __init__(self, run_path: str) -> None:
        self.run_dir = RunDirectory(run_path)

    def keep(self, artifact: TrialArtifact) -> None:
        write_artifact(self.run_dir, artifact)


@dataclass(frozen=True)
class ArtifactChannel:
    """The workers' end of the channel: a handle on the driver's `ArtifactKeeper` actor.

    It travels to the workers inside the `TrialContext`.
    """

    keeper: Any
    """The keeper's Ray actor handle."""

    def keep(
        self, trial: int, rung: int, steps: int, candidate: Mapping[str, Any], prepared: Prepared, evaluation: Evaluation
    ) -> None:
        """Send the model a trial measured at a rung to the driver and wait until it is written."""
        import ray

        artifact = TrialArtifact.measured(trial, rung, steps, candidate, prepared, evaluation)
        ray.get(self.keeper.keep.remote(artifact))

    def close(self) -> None:
        """Stop the keeper; call after the last trial, when no worker sends anymore."""
        import ray

        ray.kill(self.keeper)


def open_artifact_channel(run_dir: RunDirectory) -> ArtifactChannel:
    """Start the keeper on this node (the driver's, where the run directory is); Ray must be up.

    The keeper holds no CPU, so it never takes a trial's place. It keeps no state but the files,
    so a keeper whose process died is restarted and the write it missed is sent again.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    keeper = ray.remote(ArtifactKeeper).options(
        num_cpus=0, scheduling_strategy=here, max_restarts=-1, max_task_retries=-1
    )
    return ArtifactChannel(keeper.remote(str(run_dir.path.resolve())))


__all__ = [
    "KEEP_ALL",
    "KEEP_FRONT",
    "KEEP_NONE",
    "ArtifactChannel",
    "ArtifactKeeper",
    "TrialArtifact",
    "artifact_trial",
    "built_spec",
    "open_artifact_channel",
    "prune_artifacts",
    "read_artifact",
    "write_artifact",
]
