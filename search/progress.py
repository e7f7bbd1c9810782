"""Rich progress display for `search run`, `search export` and the Python API: preparation stages,
then trials with the front's state.

On a terminal (or in a notebook) the bars are live. Preparation runs one stage at a time, so a
stage still open when the next one starts (or the trials start) is over and is shown finished,
with its clock stopped. Anywhere else (a log file, a pipe) live bars print nothing until the
end, so the display writes one line when each stage starts and ends and one per finished trial.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichDisplay:
    """Progress bars on the console; use as a context manager around `run_search` or an export.

    It has every hook of `search.engine.SearchListener` without subclassing it, so `search
    export` and `search verify` show their first stage without importing Ray and Optuna.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal or self.console.is_jupyter
        """Live bars; otherwise one line per stage start, stage end and trial."""
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
        )
        self._stages: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._trials: Any = None

    def __enter__(self) -> RichDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def stage(self, description: str, done: int, total: int) -> None:
        name = description.split(" (")[0]
        if name not in self._stages:
            self._finish_open_stages()
            self._stages[name] = self._progress.add_task(name, total=total, status="")
            self._started[name] = time.monotonic()
            self._line(f"{name} ...")
        was_finished = self._task(self._stages[name]).finished
        detail = description[len(name):].strip(" ()")
        self._progress.update(self._stages[name], completed=done, total=total, status=detail)
        if done >= total and not was_finished:
            self._line(f"{name}: done in {time.monotonic() - self._started[name]:.1f} s")

    def started(self, total_trials: int) -> None:
        self._finish_open_stages()
        self._trials = self._progress.add_task("trials", total=total_trials, status="starting Ray")
        self._line(f"trials: {total_trials} to run, starting Ray ...")

    def trial_finished(self, row: dict[str, Any], trials: list[dict[str, Any]], front: list[dict[str, Any]]) -> None:
        failures = sum(1 for trial in trials if trial.get("status") == "failed")
        complete = [trial for trial in trials if trial.get("status") == "complete"]
        if complete and "si_sdri" in complete[0]:
            best = f"best SI-SDRi {max(trial['si_sdri'] for trial in complete):.2f} dB"
        else:
            best = f"best EER {100 * min(trial['eer'] for trial in complete):.2f}%" if complete else "no result yet"
        status = f"failed {failures} | front {len(front)} | {best}"
        self._progress.update(self._trials, completed=len(trials), status=status)
        total = self._task(self._trials).total
        self._line(f"trial {row.get('trial')} {row.get('status')} ({len(trials)}/{total:.0f}): {status}")
        if row.get("status") == "failed":
            self.console.print(f"[yellow]trial {row.get('trial')} failed:[/] {row.get('error')}")

    def _finish_open_stages(self) -> None:
        """Mark every stage that has not reported its end finished: the stage after it has begun."""
        for name, task_id in self._stages.items():
            task = self._task(task_id)
            if not task.finished:
                self._progress.update(task_id, completed=task.total)
                self._line(f"{name}: done in {time.monotonic() - self._started[name]:.1f} s")

    def _task(self, task_id: Any) -> Any:
        return next(task for task in self._progress.tasks if task.id == task_id)

    def _line(self, text: str) -> None:
        if not self.live:
            self.console.print(text, highlight=False)
