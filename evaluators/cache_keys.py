"""What of a settings dataclass enters a cache key (`evaluators.data.cache.content_hash`)."""

from __future__ import annotations

import dataclasses
from typing import Any

KEYED_WHEN_SET = {"cache_key": "when_set"}
"""Field metadata: the field enters content hashes only when it differs from its default.

An option added to a settings dataclass would otherwise change the digest of every existing
cache entry (features, teachers) although nothing they depend on changed.
"""


def keyed_fields(settings: Any) -> dict[str, Any]:
    """The dataclass's fields as a dict, without the `KEYED_WHEN_SET` ones left at their default."""
    fields = dataclasses.asdict(settings)
    for field in dataclasses.fields(settings):
        if field.metadata.get("cache_key") == "when_set" and fields[field.name] == field.default:
            del fields[field.name]
    return fields


__all__ = ["KEYED_WHEN_SET", "keyed_fields"]
