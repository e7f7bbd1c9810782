"""Fixtures of the search tests: the session's tiny run and its exported bundle (`tiny_run`), and a
tiny GE2E bundle (`ge2e_run`)."""

import pytest

from ge2e_run import shared_ge2e_bundle
from tiny_run import shared_bundle, shared_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_cache_dir, single_thread):
    """The tiny run's config and run directory, every trial with its artifact."""
    return shared_tiny_run(tmp_path_factory, tiny_cache_dir)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_cache_dir, single_thread):
    """Trial 2 (mixed 2/4/8 bits) of the tiny run, exported through the CLI."""
    return shared_bundle(tmp_path_factory, tiny_cache_dir)


@pytest.fixture(scope="module")
def ge2e_bundle(tmp_path_factory, single_thread):
    """Trial 0 (every LSTM matrix and the linear layer at 4 bits) of a tiny GE2E run, exported through the CLI."""
    return shared_ge2e_bundle(tmp_path_factory)
