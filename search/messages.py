"""Values quoted in error messages, cut so that a huge value cannot flood the one error line."""

from __future__ import annotations

from typing import Any

QUOTED_CHARACTERS = 60
"""Longest value quoted whole in an error message."""


def shorten(value: Any, limit: int = QUOTED_CHARACTERS) -> Any:
    """`value` as given when short, else its text cut to `limit` characters with the full length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return value
    return f"{text[:limit]}... ({len(text)} characters)"


__all__ = ["QUOTED_CHARACTERS", "shorten"]
