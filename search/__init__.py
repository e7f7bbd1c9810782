"""Orchestration and user interface: config, Ray Tune + Optuna search, Pareto front, reports."""

from search.config import ConfigError, RunConfig, load_config
from search.pareto import Objective, hypervolume, pareto_front
from search.run_dir import RunDirectory, RunDirectoryError

__all__ = [
    "ConfigError",
    "Objective",
    "RunConfig",
    "RunDirectory",
    "RunDirectoryError",
    "hypervolume",
    "load_config",
    "pareto_front",
]
