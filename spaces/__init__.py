"""What can be built: model families, quantizers, packing, and the search space.

`ModelDescription` is importable without torch (the cost model depends on that); the
torch-based names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from spaces.description import LayerDescription, ModelDescription

_LAZY = {
    "CompressedModel": "spaces.compress",
    "ModelSpec": "spaces.compress",
    "compress": "spaces.compress",
    "finalize_compressed": "spaces.compress",
    "load_packed_model": "spaces.compress",
    "quantizable_layers": "spaces.compress",
    "describe_model": "spaces.describe",
    "load_bundle": "spaces.bundle",
    "build_model": "spaces.models",
    "SearchSpace": "spaces.space",
    "SpaceConfig": "spaces.space",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spaces' has no attribute {name!r}")


__all__ = ["LayerDescription", "ModelDescription", *_LAZY]
