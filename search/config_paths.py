"""Where a config's files are: the per-user cache and relative paths made absolute.

A relative path in a config file means the same file whichever folder `search` runs from: it is
resolved against the folder of the config file (symbolic links followed), never the working
directory. Values given on the command line (`--set`) resolve against the working directory,
where the user typed them. The resolved config saved in a run directory then holds absolute paths,
so `--resume` and `search export` read the same cache, corpora and checkpoint from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spaces.checkpoints import PACKAGE_PREFIX

CACHE_FOLDER = "speaker-compress"
"""The cache's folder under the user's cache root."""

PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("cache_dir",),
    ("teacher", "checkpoint"),
    ("search", "storage"),
    ("mixtures", "two_speaker_train"),
    ("mixtures", "two_speaker_test"),
    ("data", "train", "path"),
    ("data", "train", "trials"),
    ("data", "eval", "*", "path"),
    ("data", "eval", "*", "trials"),
)
"""Every config key that names a file or folder (`*`: each item of a list)."""


def default_cache_dir() -> str:
    """The per-user cache: `$XDG_CACHE_HOME/speaker-compress`, else `~/.cache/speaker-compress`.

    Features and trained teachers are keyed by content, so every run of a user shares them,
    whichever folder it starts from. A relative `XDG_CACHE_HOME` is ignored, as the XDG
    specification asks.
    """
    root = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(root) if os.path.isabs(root) else Path.home() / ".cache"
    return str(base / CACHE_FOLDER)


def resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """`raw` with every relative path of `PATH_KEYS` made absolute against `base` (`~` expanded).

    Values that are not strings are left for validation to report; empty values, URIs
    (`search.storage`) and `package:` checkpoints are not paths on this machine.
    """
    resolved = dict(raw)
    for key in PATH_KEYS:
        resolved = _map_at(resolved, key, lambda value: absolute_path(value, base))
    return resolved


def path_values(raw: dict[str, Any]) -> list[Any]:
    """The values `raw` holds at `PATH_KEYS`, in that order (for rewriting them in a config's text)."""
    found: list[Any] = []
    for key in PATH_KEYS:
        _map_at(raw, key, found.append)
    return found


def absolute_path(value: Any, base: Path) -> Any:
    """A path value made absolute against `base`; other values (see `resolve_paths`) unchanged."""
    if not isinstance(value, str) or not value or "://" in value or value.startswith(PACKAGE_PREFIX):
        return value
    return os.path.normpath(base / os.path.expanduser(value))


def _map_at(node: Any, key: Sequence[str], change: Callable[[Any], Any]) -> Any:
    """`node` with `change` applied at `key`, copying the containers on the way; absent keys are skipped."""
    if not key:
        return change(node)
    head, rest = key[0], key[1:]
    if head == "*":
        return [_map_at(item, rest, change) for item in node] if isinstance(node, list) else node
    if not isinstance(node, dict) or head not in node:
        return node
    return {**node, head: _map_at(node[head], rest, change)}


__all__ = ["CACHE_FOLDER", "PATH_KEYS", "absolute_path", "default_cache_dir", "path_values", "resolve_paths"]
