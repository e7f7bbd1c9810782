"""The run directory: the one module that knows file names and formats under `results/<run>/`.

Layout::

    config.yaml       resolved run config
    reference.json    the FP32 teacher's metrics (the reference row of every report)
    trials.jsonl      one JSON line per finished trial, appended as each one ends (survives a crash)
    trials.csv        the same rows as a table, rewritten after every trial
    pareto.json       objectives, reference row and the non-dominated members
    hypervolume.csv   hypervolume after each finished trial
    study.journal     the Optuna study (JournalStorage), readable without Ray
    sensitivity.json  the per-layer sensitivity table the run's sampler read (estimator, settings,
                      cache entry, damage per layer and choice); absent when no sampler read one
    ray/              Ray Tune's experiment folder
    tensorboard/      TensorBoard event files, rewritten from the files above
    artifacts/        the models of the trials the run keeps (`search.keep_artifacts`), so that
                      export and the projector read them instead of training them again:
      trial-0007/weights.bin    its packed weights at its last reported rung, byte for byte
      trial-0007/artifact.json  what rebuilds the model from them (candidate, rung, steps, model
                                spec, sharing, activation bits) and the checksum of weights.bin
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG = "config.yaml"
REFERENCE = "reference.json"
TRIALS_JSONL = "trials.jsonl"
TRIALS_CSV = "trials.csv"
PARETO = "pareto.json"
HYPERVOLUME = "hypervolume.csv"
STUDY_JOURNAL = "study.journal"
SENSITIVITY = "sensitivity.json"
RAY_DIR = "ray"
TENSORBOARD_DIR = "tensorboard"
REPORT_HTML = "report.html"
ARTIFACTS_DIR = "artifacts"
ARTIFACT_WEIGHTS = "weights.bin"
ARTIFACT_MANIFEST = "artifact.json"
_ARTIFACT_FOLDER = re.compile(r"trial-(\d+)")
_TEMPORARY = ".tmp"

_LEADING_COLUMNS = ("trial", "status")
_TRAILING_COLUMNS = ("error", "seconds")


class RunDirectoryError(ValueError):
    """A run directory that cannot be created or read; the message names the path."""


class MissingArtifactError(RunDirectoryError):
    """A trial whose model the run directory does not hold (not kept, pruned, or a run from before artifacts)."""


class RunDirectory:
    """Reads and writes the files of one run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | os.PathLike, name: str) -> RunDirectory:
        """A new `<root>/<name>-<timestamp>/` folder; an unwritable root is a clear error."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{name}-{stamp}"
        suffix = 1
        while path.exists():
            path = Path(root) / f"{name}-{stamp}-{suffix}"
            suffix += 1
        try:
            path.mkdir(parents=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise RunDirectoryError(f"{root}: cannot create the run directory ({error.strerror})") from None
        return cls(path)

    @classmethod
    def existing(cls, path: str | os.PathLike) -> RunDirectory:
        """A run directory to read (report, export, resume): it must be a folder holding a run.

        Raises:
            RunDirectoryError: A missing path, a file, or a folder that holds no run config.
        """
        folder = Path(path)
        if not folder.exists():
            raise RunDirectoryError(f"{folder}: no such run directory")
        if not folder.is_dir():
            raise RunDirectoryError(f"{folder}: a file, not a run directory")
        if not (folder / CONFIG).is_file():
            raise RunDirectoryError(f"{folder}: not a run directory (no {CONFIG})")
        return cls(folder)

    def check_writable(self) -> None:
        """Raise RunDirectoryError before a resume writes anything into a folder it cannot write."""
        if not os.access(self.path, os.W_OK):
            raise RunDirectoryError(f"{self.path}: not writable; a resume records trials here (copy the run first)")

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def study_journal(self) -> Path:
        return self.path / STUDY_JOURNAL

    @property
    def ray_dir(self) -> Path:
        return self.path / RAY_DIR

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def artifacts_dir(self) -> Path:
        return self.path / ARTIFACTS_DIR

    def write_config(self, resolved: Mapping[str, Any]) -> None:
        (self.path / CONFIG).write_text(yaml.safe_dump(dict(resolved), sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        return self._read(CONFIG, yaml.safe_load)

    def write_reference(self, row: Mapping[str, Any]) -> None:
        _write_json(self.path / REFERENCE, row)

    def read_reference(self) -> dict[str, Any]:
        return self._read(REFERENCE, json.loads)

    def append_trial(self, row: Mapping[str, Any]) -> None:
        """Persist one finished trial immediately, then refresh the CSV view."""
        with open(self.path / TRIALS_JSONL, "a") as stream:
            stream.write(json.dumps(_finite(row)) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        self._write_csv(self.read_trials())

    def rewrite_trials(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace every recorded trial at once (resume: duplicates dropped, lost rows restored)."""
        temporary = self.path / (TRIALS_JSONL + ".tmp")
        with open(temporary, "w") as stream:
            stream.writelines(json.dumps(_finite(row)) + "\n" for row in rows)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path / TRIALS_JSONL)
        self._write_csv(self.read_trials())

    def drop_partial_writes(self) -> list[str]:
        """Undo what a killed driver left half-written: a partial last line of trials.jsonl or of
        study.journal, the study's lock file and artifact files never moved into place. Only call
        this when no other process runs the study.

        Returns:
            The names of the files repaired.
        """
        repaired = []
        for name in (TRIALS_JSONL, STUDY_JOURNAL):
            path = self.path / name
            data = path.read_bytes() if path.exists() else b""
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as stream:
                    stream.truncate(data.rfind(b"\n") + 1)
                repaired.append(name)
        lock = self.path / (STUDY_JOURNAL + ".lock")
        if lock.is_symlink() or lock.exists():
            lock.unlink()
            repaired.append(lock.name)
        for temporary in sorted(self.artifacts_dir.glob(f"*/*{_TEMPORARY}")):
            temporary.unlink()
            repaired.append(str(temporary.relative_to(self.path)))
        return repaired

    def read_trials(self) -> list[dict[str, Any]]:
        """All finished trials, in completion order (empty before the first one)."""
        if not (self.path / TRIALS_JSONL).exists():
            return []
        text = self._read(TRIALS_JSONL, str)
        rows = []
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines) and not text.endswith("\n"):  # a driver killed mid-write
                    logging.getLogger(__name__).warning(
                        "%s: ignoring its half-written last line (the run was stopped while writing it)",
                        self.path / TRIALS_JSONL,
                    )
                    continue
                raise RunDirectoryError(f"{self.path / TRIALS_JSONL}: line {number} is corrupt") from None
        return rows

    def write_pareto(self, objectives: Sequence[Mapping[str, str]], reference: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> None:
        _write_json(self.path / PARETO, {"objectives": list(objectives), "reference": reference, "members": list(members)})

    def read_pareto(self) -> dict[str, Any]:
        return self._read(PARETO, json.loads)

    def write_sensitivity(self, table: Mapping[str, Any]) -> None:
        """Record the sensitivity table the run's sampler read (`search.sensitivity_tables`), for the report."""
        _write_json(self.path / SENSITIVITY, table)

    def read_sensitivity(self) -> dict[str, Any] | None:
        """The recorded sensitivity table, or None when no sampler of the run read one."""
        if not (self.path / SENSITIVITY).exists():
            return None
        return self._read(SENSITIVITY, json.loads)

    def write_hypervolume(self, history: Sequence[float]) -> None:
        with open(self.path / HYPERVOLUME, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["trials_finished", "hypervolume"])
            writer.writerows((index + 1, f"{value:.6g}") for index, value in enumerate(history))

    def read_hypervolume(self) -> list[float]:
        rows = self._read(HYPERVOLUME, lambda text: list(csv.DictReader(text.splitlines())))
        return [float(row["hypervolume"]) for row in rows]

    def write_artifact(self, trial: int, manifest: Mapping[str, Any], weights: bytes) -> None:
        """Keep a trial's packed weights and manifest, replacing what the trial kept before.

        Each file is written beside its place and moved into it, weights.bin first; the manifest
        records the checksum of weights.bin, so a writer stopped between the two files leaves a
        pair that `read_artifact` refuses rather than one that looks complete.
        """
        folder = self._artifact_folder(trial)
        folder.mkdir(parents=True, exist_ok=True)
        record = {**manifest, "size_bytes": len(weights), "weights_sha256": hashlib.sha256(weights).hexdigest()}
        _replace_atomically(folder / ARTIFACT_WEIGHTS, weights)
        _replace_atomically(folder / ARTIFACT_MANIFEST, json.dumps(record, indent=2).encode())

    def read_artifact(self, trial: int) -> tuple[dict[str, Any], bytes]:
        """A trial's manifest and packed weights, checked against each other.

        Raises:
            MissingArtifactError: The run keeps no artifact of the trial.
            RunDirectoryError: The artifact is corrupt or was left half-written.
        """
        folder = self._artifact_folder(trial)
        try:
            manifest = json.loads((folder / ARTIFACT_MANIFEST).read_text())
            weights = (folder / ARTIFACT_WEIGHTS).read_bytes()
        except FileNotFoundError:
            raise MissingArtifactError(f"{folder}: trial {trial} has no kept model in {self.path}") from None
        except ValueError as error:
            raise RunDirectoryError(f"{folder / ARTIFACT_MANIFEST}: corrupt ({error})") from None
        recorded = (manifest.get("size_bytes"), manifest.get("weights_sha256"))
        if (len(weights), hashlib.sha256(weights).hexdigest()) != recorded:
            raise RunDirectoryError(
                f"{folder}: {ARTIFACT_WEIGHTS} does not match {ARTIFACT_MANIFEST} "
                "(a write was interrupted or the file changed)"
            )
        return manifest, weights

    def artifact_trials(self) -> list[int]:
        """The trial numbers the run keeps artifacts of, in increasing order."""
        folders = self.artifacts_dir.iterdir() if self.artifacts_dir.is_dir() else ()
        matches = (_ARTIFACT_FOLDER.fullmatch(folder.name) for folder in folders)
        return sorted(int(match.group(1)) for match in matches if match)

    def remove_artifact(self, trial: int) -> None:
        shutil.rmtree(self._artifact_folder(trial), ignore_errors=True)

    def _artifact_folder(self, trial: int) -> Path:
        return self.artifacts_dir / f"trial-{int(trial):04d}"

    def _write_csv(self, rows: Sequence[Mapping[str, Any]]) -> None:
        keys = sorted({key for row in rows for key in row} - set(_LEADING_COLUMNS) - set(_TRAILING_COLUMNS))
        columns = [*_LEADING_COLUMNS, *keys, *_TRAILING_COLUMNS]
        temporary = self.path / (TRIALS_CSV + ".tmp")
        with open(temporary, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.path / TRIALS_CSV)

    def _read(self, name: str, parse: Any) -> Any:
        path = self.path / name
        try:
            return parse(path.read_text())
        except FileNotFoundError:
            raise RunDirectoryError(f"{path}: missing; is {self.path} a run directory?") from None
        except NotADirectoryError:
            raise RunDirectoryError(f"{self.path}: a file, not a run directory") from None
        except PermissionError:
            raise RunDirectoryError(f"{path}: not readable (permission denied)") from None
        except (ValueError, yaml.YAMLError) as error:  # UnicodeDecodeError is a ValueError too
            raise RunDirectoryError(f"{path}: corrupt ({' '.join(str(error).split())[:200]})") from None


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: store non-finite floats as None."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value for key, value in row.items()}


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, flush it to disk, then move it into place in one step."""
    temporary = path.with_name(path.name + _TEMPORARY)
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def _write_json(path: Path, payload: Any) -> None:
    _replace_atomically(path, json.dumps(payload, indent=2).encode())
