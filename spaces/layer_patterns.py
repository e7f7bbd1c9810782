"""Which quantizable layers a layer knob addresses, and how a granularity splits them into knobs.

Patterns are shell globs over layer names (`fnmatch`, case-sensitive; `*` also crosses dots, so
`layer1.*` is every layer of stage layer1). Groups are the keys of the family's `layer_groups()`
(its stages or blocks). Granularities:

- "stage": one knob per layer group (`bits.layer1`);
- "block": one knob per repeated block: a layer named `<stage>.<index>.<rest>` belongs to block
  `<stage>.<index>` (ResNet's `layer1.0`); any other layer to its stage (ECAPA's `block1`);
- "layer": one knob per layer (`bits.layer1.0.conv1`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from spaces.knobs import KnobConfig, SpaceError

_GLOB_CHARACTERS = "*?["


def pattern_matches(knob: KnobConfig, layer_groups: Mapping[str, Sequence[str]], model: str) -> dict[str, tuple[str, ...]]:
    """Each of the knob's patterns and groups (groups as `group:<name>`) -> the layers it addresses.

    Raises:
        SpaceError: a pattern or layer name that matches no quantizable layer, or an unknown group.
    """
    label = f"space.knobs[{knob.name}]"
    layers = [layer for names in layer_groups.values() for layer in names]
    matches: dict[str, tuple[str, ...]] = {}
    for pattern in knob.layers:
        matched = tuple(layer for layer in layers if fnmatchcase(layer, pattern))
        if not matched:
            what = f'pattern "{pattern}" matches no' if any(c in pattern for c in _GLOB_CHARACTERS) else f'"{pattern}" is not a'
            raise SpaceError(f"{label}.layers: {what} quantizable layer of {model}; layers: {', '.join(layers)}")
        matches[pattern] = matched
    for group in knob.groups:
        if group not in layer_groups:
            raise SpaceError(f"{label}.groups: unknown group {group!r} of {model}; groups: {list(layer_groups)}")
        matches[f"group:{group}"] = tuple(layer_groups[group])
    return matches


def addressed_layers(knob: KnobConfig, layer_groups: Mapping[str, Sequence[str]], model: str) -> tuple[str, ...]:
    """Every layer the knob addresses, once each, in model order."""
    matched = {layer for layers in pattern_matches(knob, layer_groups, model).values() for layer in layers}
    return tuple(layer for names in layer_groups.values() for layer in names if layer in matched)


def split_by_granularity(
    layers: Sequence[str], layer_groups: Mapping[str, Sequence[str]], granularity: str | None
) -> dict[str, tuple[str, ...]]:
    """Layers keyed by their stage, block or own name (one entry "" when there is no granularity)."""
    if granularity is None:
        return {"": tuple(layers)}
    stage_of = {layer: group for group, names in layer_groups.items() for layer in names}
    units: dict[str, list[str]] = {}
    for layer in layers:
        units.setdefault(_unit(layer, stage_of[layer], granularity), []).append(layer)
    return {unit: tuple(names) for unit, names in units.items()}


def _unit(layer: str, stage: str, granularity: str) -> str:
    if granularity == "layer":
        return layer
    parts = layer.split(".")
    if granularity == "block" and len(parts) > 2 and parts[1].isdigit():
        return ".".join(parts[:2])
    return stage
