"""Config settings given on the command line: `--set key=value` (dotted keys, YAML values).

An override is written into the config's YAML mapping before validation, so a value set on the
command line is checked exactly like one in the file, and an error names the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from search.messages import shorten
from search.run_config import ConfigError


def parse_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` as (dotted key, value); the value is read as YAML (`4`, `true`, `null`, `[2, 4]`, text).

    Raises:
        ConfigError: No `=`, an empty key or key part, or a value that is not YAML.
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key or not all(part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {shorten(text)!r}: expected KEY=VALUE with a dotted key, e.g. search.trials=4")
    try:
        return key, yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}={shorten(value)!r}: the value is not valid YAML") from None


def settings_dict(settings: list[tuple[str, Any]]) -> dict[str, Any]:
    """The (key, value) pairs as a dict; a key given twice is an error rather than a silent last-wins."""
    merged: dict[str, Any] = {}
    for key, value in settings:
        if key in merged:
            raise ConfigError(f"--set {key}: given twice ({shorten(merged[key])!r} and {shorten(value)!r})")
        merged[key] = value
    return merged


def nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings: `{"search.trials": 4}` -> `{"search": {"trials": 4}}`."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        *sections, leaf = dotted.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {section} is set to a value by another --set")
        node[leaf] = value
    return tree


def merged(raw: dict[str, Any], tree: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """`raw` with the nested overrides written into it (a copy); a key whose section is not a mapping is an error."""
    result = dict(raw)
    for key, value in tree.items():
        dotted = f"{where}{key}"
        if isinstance(value, dict) and key in result and result[key] is not None:
            if not isinstance(result[key], dict):
                raise ConfigError(f"--set {dotted}.{_first_key(value)}: {dotted} is not a mapping in the config")
            result[key] = merged(result[key], value, f"{dotted}.")
        else:
            result[key] = value
    return result


def _first_key(tree: Mapping[str, Any]) -> str:
    """The dotted key of the first override below `tree`, for naming it in an error."""
    key = next(iter(tree))
    return f"{key}.{_first_key(tree[key])}" if isinstance(tree[key], dict) and tree[key] else key


__all__ = ["merged", "nested", "parse_setting", "settings_dict"]
