"""Orchestration and user interface: config, Ray Tune + Optuna search, Pareto front, reports.

`from search import run, load_run` is the Python API (`search.api`, docs/python-api.md). The
public names load on first use (module `__getattr__`), so `import search.pareto` or the CLI's
`--help` do not pay for torch, Ray, Optuna and pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ConfigError": "search.run_config",
    "Objective": "search.pareto",
    "RunConfig": "search.run_config",
    "RunDirectory": "search.run_dir",
    "Run": "search.api",
    "RunDirectoryError": "search.run_dir",
    "hypervolume": "search.pareto",
    "load_config": "search.config",
    "load_run": "search.api",
    "pareto_front": "search.pareto",
    "run": "search.api",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
