"""Detect other installed distributions that claim this project's top-level package names.

The project installs four top-level packages (`search`, `spaces`, `evaluators`, `hwcost`). PyPI
has unrelated distributions called `spaces` and `evaluators`: pip installs both into the same
`site-packages/<name>/` folder, each overwriting the other's files, and nothing fails until a
module is imported. The command line warns when such a distribution is installed, or when one
of the names imports from a folder that is not this project's, instead of failing later with
an unrelated ImportError (docs/python-api.md#installing-beside-other-packages).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "speaker-compress"
TOP_LEVEL = ("search", "spaces", "evaluators", "hwcost")


@dataclass(frozen=True)
class NameClash:
    """One top-level name that another installed distribution (or folder) also provides."""

    package: str
    owner: str
    """The other distribution and its version, or the folder the name imports from."""

    def warning(self) -> str:
        return (
            f"warning: top-level package {self.package!r} is also provided by {self.owner}; it and "
            f"{DISTRIBUTION} overwrite each other's files: install {DISTRIBUTION} in its own virtualenv "
            f"(or `pip uninstall {self.package}` there)"
        )


def name_clashes() -> list[NameClash]:
    """Installed distributions named like one of our packages, and our names importing from elsewhere."""
    home = Path(__file__).resolve().parent.parent
    clashes = []
    for package in TOP_LEVEL:
        try:
            other = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            other = None
        if other is not None and other.metadata["Name"] != DISTRIBUTION:
            clashes.append(NameClash(package, f"the installed distribution {package!r} {other.version}"))
            continue
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin).resolve().parent.parent if spec is not None and spec.origin else None
        if origin is not None and origin != home:
            clashes.append(NameClash(package, f"the folder {origin / package}"))
    return clashes


def version() -> str:
    """This project's installed version (`unknown` when run from a folder that was never installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["DISTRIBUTION", "TOP_LEVEL", "NameClash", "name_clashes", "version"]
