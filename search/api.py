"""Python API: run a search or open a finished run, and inspect it as pandas tables.

`from search import run, load_run` is the entry point for notebooks and scripts; it does what
`search run`, `search report` and `search export` do, with the run's trials, front and FP32
reference row as pandas objects instead of printed tables (docs/python-api.md).

`run` starts a local Ray for the search and shuts it down when the search ends (or joins
`address`), unless Ray is already running in the process, which it then uses and leaves running:
a notebook can call it again and again. The tables are read from the run directory on every
access, so a `Run` opened while a search writes to it shows the trials finished so far.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.config import load_config
from search.pareto import Objective
from search.run_config import RunConfig
from search.run_dir import RunDirectory

if TYPE_CHECKING:
    import pandas as pd

    from search.export import ExportedBundle

TRIAL = "trial"
ON_FRONT = "on_front"


@dataclass(frozen=True)
class Run:
    """A run directory and its resolved config.

    Attributes:
        run_dir: The run's files (`search.run_dir.RunDirectory`).
        config: The config the run was made with (its saved, resolved copy).
    """

    run_dir: RunDirectory
    config: RunConfig

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self.config.objectives

    @property
    def trials(self) -> pd.DataFrame:
        """Every finished trial (trials.csv's rows), indexed by trial number, with a boolean `on_front` column."""
        import pandas as pd

        table = pd.DataFrame.from_records(self.run_dir.read_trials())
        if table.empty:
            return pd.DataFrame(columns=[ON_FRONT], index=pd.Index([], name=TRIAL))
        table = table.set_index(TRIAL)
        table[ON_FRONT] = table.index.isin(self.front.index)
        return table

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front's members as the run recorded them (pareto.json), indexed by trial number."""
        import pandas as pd

        from search.report import read_front

        members = read_front(self.run_dir).pareto["members"]
        if not members:
            return pd.DataFrame(index=pd.Index([], name=TRIAL))
        return pd.DataFrame.from_records(members).set_index(TRIAL)

    @property
    def reference(self) -> pd.Series:
        """The FP32 teacher's row (reference.json): the metrics every trial is compared with."""
        import pandas as pd

        return pd.Series(self.run_dir.read_reference(), name="fp32")

    def export(
        self,
        trial: int | None = None,
        *,
        pick: str | None = None,
        out: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> ExportedBundle:
        """Write the deployment bundle of one trial, chosen by number or by `pick` ('knee',
        'min eer where size_bytes <= 500000'), as `search export` does (default folder
        `RUN/bundles/trial-NNNN`)."""
        from search.export import export_bundle
        from search.progress import RichDisplay

        if not progress:
            return export_bundle(self.path, trial=trial, pick=pick, out=out)
        with RichDisplay() as display:
            return export_bundle(self.path, trial=trial, pick=pick, out=out, progress=display.stage)

    def report(self) -> Path:
        """Print the front beside the FP32 row (as `search report`) and write RUN/report.html; returns its path."""
        from search.report import print_report
        from search.report_html import write_html_report

        page = write_html_report(self.run_dir)
        print_report(self.run_dir)
        return page

    def __repr__(self) -> str:
        rows = self.run_dir.read_trials()
        return f"Run({str(self.path)!r}, task={self.config.task!r}, trials={len(rows)})"


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open the run directory `path` written by `search run` or `run`.

    Raises:
        RunDirectoryError: Not a run directory (the message names the missing file).
        ConfigError: Its saved config no longer validates.
    """
    run_dir = RunDirectory.existing(path)
    return Run(run_dir, load_config(run_dir.config_path))


def run(
    config: str | os.PathLike[str] | RunConfig = "demo",
    *,
    overrides: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] = "results",
    address: str | None = None,
    progress: bool = True,
) -> Run:
    """Run a search to its trial budget and return the finished run.

    Args:
        config: A config file, a ready config's name (`demo`), or a loaded `RunConfig`.
        overrides: Dotted keys set over the file's, as `--set` does, e.g. `{"search.trials": 4}`.
        out: Folder of the new run directory (`out/<name>-<timestamp>`).
        address: Ray cluster to join (`auto`, `HOST:PORT`); a local Ray when None.
        progress: Show progress bars (stderr; a notebook cell shows them live).

    An interrupt (Ctrl-C, the notebook's stop button) keeps the trials finished so far;
    `search run --resume RUN` continues the run.
    """
    from search.engine import SearchListener, run_search
    from search.progress import RichDisplay

    if isinstance(config, RunConfig):
        if overrides:
            raise ValueError("overrides apply to a config file; set them with load_config(path, overrides)")
        loaded = config
    else:
        loaded = load_config(config, overrides)
    run_dir = RunDirectory.create(out, loaded.name)
    with RichDisplay() if progress else contextlib.nullcontext(SearchListener()) as listener:
        with removed_if_nothing_ran(run_dir):
            run_search(loaded, run_dir, address=address, listener=listener)
    return Run(run_dir, loaded)


@contextlib.contextmanager
def removed_if_nothing_ran(run_dir: RunDirectory) -> Iterator[None]:
    """A new run directory is removed when the run fails before any trial was recorded.

    Preparation failures (a missing corpus, too few speakers, bad audio in strict mode) would
    otherwise leave a folder of empty files that looks like a run. An interrupt (Ctrl-C) keeps
    the folder: the user may resume it.
    """
    try:
        yield
    except Exception:
        if run_dir.path.is_dir() and not run_dir.read_trials():
            shutil.rmtree(run_dir.path, ignore_errors=True)
            print(f"removed {run_dir.path}: the run failed before any trial ran", file=sys.stderr)
        raise


__all__ = ["Run", "load_run", "removed_if_nothing_ran", "run"]
