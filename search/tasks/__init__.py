"""The task registry: what a run compresses, looked up once by the config's `task:` name.

Adding a task: one module with a `Task` subclass (its config sections, evaluator, metrics,
export, verify checks and card text), and one line below.
"""

from __future__ import annotations

from search.messages import shorten
from search.tasks.base import Task
from search.tasks.extraction import ExtractionTask
from search.tasks.verification import VerificationTask

TASKS: dict[str, Task] = {task.name: task for task in (VerificationTask(), ExtractionTask())}


class UnknownTaskError(ValueError):
    """A `task:` name no task is registered under."""


def get_task(name: str) -> Task:
    """The task registered as `name`; unknown names raise `UnknownTaskError` listing the known ones."""
    if name not in TASKS:
        raise UnknownTaskError(f"task={shorten(name)!r}: expected one of {list(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "UnknownTaskError", "get_task"]
