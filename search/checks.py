"""One check of `search verify`: a named, passed-or-failed test with the figures behind it.

Its own module because both the generic checks (`search.verify`) and each task's agreement
checks (`search.tasks`) produce them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One verification check and the figures behind its verdict."""

    name: str
    passed: bool
    detail: str


__all__ = ["Check"]
