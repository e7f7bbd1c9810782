"""Tiny search configs and process helpers for the engine tests (a Ray search in tens of seconds).

Run as a script, it is the `search` command line with a `HangingEvaluator`: while the file named
by `ENGINE_TEST_HANG_FILE` exists, every candidate after the first `ENGINE_TEST_HANG_AFTER` (0 when
unset) to start hangs in its worker, which first touches `<hang file>.<pid>`; every candidate takes
at least `ENGINE_TEST_TRIAL_SECONDS` (0 when unset).
`python engine_runs.py cluster ARGS` runs `search ARGS --address` against a
local two-node Ray cluster (head + one worker node, one CPU each) and writes the node ids to
`ENGINE_TEST_NODES_FILE`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evaluators.verification import VerificationEvaluator
from tiny_config import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, cache: Path, extra: str = "") -> Path:
    """The tiny config plus `extra` YAML lines (e.g. a `search:` block) at `path`."""
    path.write_text(tiny_config(cache, extra=extra))
    return path


def start_driver(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """This module as a `search` process in its own session (so the test can kill all it started)."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_session(session: int) -> None:
    """SIGKILL every process of a session started by `start_driver` (driver, its Ray, its workers)."""
    for _ in range(50):
        members = _session_members(session)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


def _session_members(session: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


class HangingEvaluator(VerificationEvaluator):
    """The verification evaluator, with one PTQ rung that hangs while the hang file exists, and
    lasts at least `trial_seconds`: a tiny model's trial takes milliseconds, and Tune, reusing
    its actors, may run them all on the first actor it started before a second node's is up.

    Which candidates hang is decided by the order they start in, counted across workers, not by
    when a test creates the hang file: a tiny search may start its whole budget within one poll
    of the test, and then no candidate would be left to hang."""

    def __init__(self, hang_file: str | None = None, trial_seconds: float = 0.0, hang_after: int = 0) -> None:
        self.hang_file = hang_file
        self.trial_seconds = trial_seconds
        self.hang_after = hang_after

    def evaluate_ladder(self, candidate, prepared):
        if self.hang_file and os.path.exists(self.hang_file) and self._start_index() >= self.hang_after:
            Path(f"{self.hang_file}.{os.getpid()}").touch()
            time.sleep(600)
        time.sleep(self.trial_seconds)
        yield from super().evaluate_ladder(candidate, prepared)

    def _start_index(self) -> int:
        """This candidate's place among those started, claimed as the first free `<hang file>-started-N`."""
        index = 0
        while True:
            try:
                os.close(os.open(f"{self.hang_file}-started-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return index
            except FileExistsError:
                index += 1


def _main(argv: list[str]) -> int:
    from search.cli import main

    evaluator = HangingEvaluator(
        os.environ.get("ENGINE_TEST_HANG_FILE"),
        float(os.environ.get("ENGINE_TEST_TRIAL_SECONDS", "0")),
        int(os.environ.get("ENGINE_TEST_HANG_AFTER", "0")),
    )
    if argv[:1] != ["cluster"]:
        return main(argv, evaluator)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes = [cluster.head_node, cluster.add_node(num_cpus=1)]
        cluster.wait_for_nodes()
        Path(os.environ["ENGINE_TEST_NODES_FILE"]).write_text("\n".join(node.node_id for node in nodes))
        return main([*argv[1:], "--address", cluster.address], evaluator)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
