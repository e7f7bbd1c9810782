"""Rich progress display for `search run`: preparation stages, then trials with the front's state."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from search.engine import SearchListener


class RichDisplay(SearchListener):
    """Progress bars on the console; use as a context manager around `run_search`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self._stages: dict[str, Any] = {}
        self._trials: Any = None

    def __enter__(self) -> RichDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def stage(self, description: str, done: int, total: int) -> None:
        name = description.split(" (")[0]
        if name not in self._stages:
            self._stages[name] = self._progress.add_task(name, total=total, status="")
        detail = description[len(name):].strip(" ()")
        self._progress.update(self._stages[name], completed=done, total=total, status=detail)

    def started(self, total_trials: int) -> None:
        self._trials = self._progress.add_task("trials", total=total_trials, status="starting Ray")

    def trial_finished(self, row: dict[str, Any], trials: list[dict[str, Any]], front: list[dict[str, Any]]) -> None:
        failures = sum(1 for trial in trials if trial.get("status") == "failed")
        complete = [trial for trial in trials if trial.get("status") == "complete"]
        if complete and "si_sdri" in complete[0]:
            best = f"best SI-SDRi {max(trial['si_sdri'] for trial in complete):.2f} dB"
        else:
            best = f"best EER {100 * min(trial['eer'] for trial in complete):.2f}%" if complete else "no result yet"
        status = f"failed {failures} | front {len(front)} | {best}"
        self._progress.update(self._trials, completed=len(trials), status=status)
        if row.get("status") == "failed":
            self.console.print(f"[yellow]trial {row.get('trial')} failed:[/] {row.get('error')}")
