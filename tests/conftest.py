"""Shared fixtures: one Ray session for the whole test run (ray.init costs seconds)."""

import os

import pytest

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from search.engine import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tiny-model training on one intra-op thread.

    Tiny convolutions gain nothing from a second thread, and on a loaded machine two OpenMP
    threads waiting on each other made a training step many times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory):
    """One feature and teacher cache for the tiny engine-test runs: the tiny teacher trains once."""
    return tmp_path_factory.mktemp("tiny-cache")
