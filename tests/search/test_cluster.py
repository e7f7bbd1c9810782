"""A small search on a real two-node Ray cluster (head + worker node on this machine, 1 CPU each)."""

import shutil
import tempfile
from pathlib import Path

from engine_runs import kill_session, start_driver, write_config
from search.run_dir import RunDirectory


def test_trials_run_on_both_nodes_of_a_two_node_cluster_and_send_their_models_to_the_driver(tmp_path, tiny_cache_dir):
    search = "search: {trials: 4, workers: 2, cpus_per_trial: 1, sampler: random, keep_artifacts: all}\n"
    config = write_config(tmp_path / "tiny.yaml", tiny_cache_dir, search)
    nodes_file = tmp_path / "nodes.txt"
    # Ray's socket paths must stay short, and its "current cluster" file must not be the machine's.
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    env = {"RAY_TMPDIR": ray_tmp, "ENGINE_TEST_NODES_FILE": str(nodes_file), "ENGINE_TEST_TRIAL_SECONDS": "3"}
    args = ["cluster", "run", str(config), "--out", str(tmp_path / "results")]
    driver = start_driver(args, tmp_path / "cluster.log", env)
    try:
        assert driver.wait(timeout=400) == 0, (tmp_path / "cluster.log").read_text()[-3000:]
    finally:
        kill_session(driver.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    nodes = set(nodes_file.read_text().split())
    (run_path,) = (tmp_path / "results").iterdir()
    rows = RunDirectory(run_path).read_trials()
    assert len(rows) == 4 and all(row["status"] == "complete" for row in rows)
    assert len(nodes) == 2 and {row["node"] for row in rows} == nodes
    assert RunDirectory(run_path).artifact_trials() == [0, 1, 2, 3]  # sent from both nodes to the driver's
    assert Path(run_path, "pareto.json").is_file()
