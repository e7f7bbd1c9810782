"""The demo's Pareto front: `search run configs/demo.yaml`, reported as `search report --format md` shows it.

Without RUN_DIR it runs `search run CONFIG --out <temporary folder>` (corpus, features and teacher
come from the config's cache when present, as for any run), times it, and removes the run
directory afterwards; with RUN_DIR it reads a finished run instead. Writes
`results/benchmarks/demo_front.json`: the run's pareto.json, its trial counts, hypervolume and
time, and the front as Markdown.

    .venv/bin/python benchmarks/demo_front.py [RUN_DIR] [--config configs/demo.yaml] [--out results/benchmarks/demo_front.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.report import front_markdown, summarise_trials  # noqa: E402
from search.run_dir import RunDirectory  # noqa: E402
from render_docs import RESULTS, write_result  # noqa: E402


def describe_run(run_dir: RunDirectory, config: str, wall_seconds: float | None) -> dict[str, Any]:
    """What the docs show of a finished run."""
    summary = summarise_trials(run_dir.read_trials())
    return {
        "config": config,
        "run": run_dir.path.name,
        "wall_seconds": wall_seconds,
        "cpus": os.cpu_count(),
        "trials": summary.trials,
        "failed": summary.failed,
        "trial_seconds": summary.total_seconds,
        "hypervolume": run_dir.read_hypervolume()[-1],
        "pareto": run_dir.read_pareto(),
        "front_markdown": front_markdown([run_dir]),
    }


def run_and_describe(config: str) -> dict[str, Any]:
    """`search run CONFIG` into a temporary folder, timed, then described."""
    with tempfile.TemporaryDirectory(prefix="demo-front-") as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.cli", "run", config, "--out", out], cwd=ROOT, check=True)
        wall_seconds = time.perf_counter() - start
        (run_path,) = Path(out).iterdir()
        return describe_run(RunDirectory(run_path), config, wall_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run to read (default: run CONFIG now)")
    parser.add_argument("--config", default="configs/demo.yaml", help="config to run, relative to the project root")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo_front.json")
    args = parser.parse_args(argv)
    if args.run_dir is None:
        payload = run_and_describe(args.config)
    else:
        run_dir = RunDirectory(args.run_dir)
        payload = describe_run(run_dir, str(run_dir.config_path), None)
    write_result(args.out, payload)
    print(payload["front_markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
