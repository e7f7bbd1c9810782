"""`search init NAME [--from READY]`: a starting config file written from a ready config.

The ready config's text is copied, comments included, so the new file explains its keys; only
the run name changes, and relative paths become absolute: they were relative to the ready
config's folder and the copy lives elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from search.config import load_config
from search.config_paths import absolute_path, path_values
from search.ready_configs import ready_config
from search.run_config import ConfigError

_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)
_SUFFIXES = (".yaml", ".yml")


def write_starting_config(name: str, source: str = "demo", folder: str | os.PathLike[str] = ".") -> Path:
    """Write `NAME.yaml` (or NAME, when it ends in .yaml/.yml) in `folder` from the ready config `source`.

    Returns:
        The path written, after it loaded as a valid config.

    Raises:
        ConfigError: The file exists, `source` is not a ready config, or NAME is not a valid run name.
    """
    path = Path(folder) / (name if name.endswith(_SUFFIXES) else f"{name}.yaml")
    if path.exists():
        raise ConfigError(f"{path}: already exists; choose another NAME or remove the file")
    ready = ready_config(source)
    text = _with_absolute_paths(_with_name(ready.read_text(encoding="utf-8"), path.stem), ready.resolve().parent)
    try:
        with open(path, "x", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as error:
        raise ConfigError(f"{path}: cannot write: {error.strerror}") from None
    try:
        load_config(path)
    except ConfigError:
        path.unlink()
        raise
    return path


def _with_name(text: str, name: str) -> str:
    """`text` with its top-level `name:` line set to `name` (YAML-quoted when it needs quotes)."""
    line = yaml.safe_dump({"name": name}, default_flow_style=False, allow_unicode=True).strip()
    if _NAME_LINE.search(text):
        return _NAME_LINE.sub(lambda _: line, text, count=1)
    return f"{line}\n{text}"


def _with_absolute_paths(text: str, base: Path) -> str:
    """`text` with each relative path value (a whole YAML value on its line) replaced by its absolute path."""
    for value in path_values(yaml.safe_load(text) or {}):
        absolute = absolute_path(value, base)
        if absolute != value:
            text = re.sub(rf"(:[ \t]+){re.escape(value)}(?=[ \t]*(#|$))", lambda match: match[1] + absolute, text, flags=re.MULTILINE)
    return text


__all__ = ["write_starting_config"]
