"""`search teacher export`: write a run's teacher as a native checkpoint, to reuse it anywhere.

A teacher trained once (on a cluster, or by a long local run) is then loaded by any config with
`teacher: {checkpoint: FILE, format: native}`, instead of being trained again where the cache
is not shared. The teacher is the one the run uses: read from the cache when present, trained
(or loaded from the config's own checkpoint) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from search.config import RunConfig, load_config
from search.run_dir import CONFIG as RUN_CONFIG_FILE
from search.run_config import ConfigError
from search.tasks import get_task
from spaces.checkpoints import save_native_checkpoint


def run_config_of(source: str | os.PathLike) -> RunConfig:
    """The config a run directory was resolved with, or a config file."""
    path = Path(source)
    return load_config(path / RUN_CONFIG_FILE if path.is_dir() else path)


def export_teacher(
    source: str | os.PathLike, out: str | os.PathLike, progress: Callable[[str, int, int], None] | None = None
) -> Path:
    """Prepare the teacher of the run or config at `source` and write it to `out` as a native checkpoint.

    Raises:
        ConfigError: `out` exists, or the config cannot be used.
    """
    target = Path(out)
    if target.exists():
        raise ConfigError(f"--out {target}: already exists; choose a new file")
    config = run_config_of(source)
    task = get_task(config.task)
    prepared = task.evaluator().prepare(task.setup(config), progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_native_checkpoint(target, prepared.teacher_state, prepared.spec)
    return target


__all__ = ["export_teacher", "run_config_of"]
