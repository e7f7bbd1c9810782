"""Fixtures of the search tests: the session's tiny run and its exported bundle (`tiny_run`)."""

import pytest

from tiny_run import shared_bundle, shared_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_cache_dir, single_thread):
    """The tiny run's config and run directory, every trial with its artifact."""
    return shared_tiny_run(tmp_path_factory, tiny_cache_dir)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_cache_dir, single_thread):
    """Trial 2 (mixed 2/4/8 bits) of the tiny run, exported through the CLI."""
    return shared_bundle(tmp_path_factory, tiny_cache_dir)
