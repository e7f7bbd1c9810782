"""The ready configs shipped inside the package (`search/configs/*.yaml`), found by name.

They are package data, so `search run demo` works from a wheel as well as from the checkout
(where `configs/` is a link to the same folder): a config argument that is not a file is looked
up here by name.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from search.run_config import ConfigError

SUFFIX = ".yaml"


def ready_configs_folder() -> Path:
    """The folder of the shipped configs, wherever the package is installed."""
    return Path(str(importlib.resources.files("search") / "configs"))


def ready_config_names() -> list[str]:
    """Names of the shipped configs (file names without `.yaml`), sorted."""
    return sorted(path.stem for path in ready_configs_folder().glob(f"*{SUFFIX}"))


def ready_config(name: str) -> Path:
    """The shipped config called `name` (`demo` or `demo.yaml`).

    Raises:
        ConfigError: No shipped config has that name; the message lists those that do.
    """
    path = ready_configs_folder() / f"{name.removesuffix(SUFFIX)}{SUFFIX}"
    if "/" in name or not path.is_file():
        raise ConfigError(f"{name}: no ready config of that name; ready configs: {', '.join(ready_config_names())}")
    return path


def config_source(argument: str | os.PathLike[str]) -> Path:
    """The config file a command-line argument names: an existing path, else a ready config's name.

    Raises:
        ConfigError: Neither a file nor a ready config's name.
    """
    path = Path(argument)
    if path.exists() or os.sep in str(argument):
        return path  # a missing file named by a path is reported by `load_config`, with its path
    try:
        return ready_config(str(argument))
    except ConfigError:
        raise ConfigError(
            f"{argument}: no such config file, and no ready config of that name; ready configs: "
            f"{', '.join(ready_config_names())}"
        ) from None


__all__ = ["config_source", "ready_config", "ready_config_names", "ready_configs_folder"]
