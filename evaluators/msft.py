"""Multi-stage fine-tuning (MSFT, Liu, Wang, Qian 2024): the order in which layer groups get quantized.

Quantizing every layer at once moves all activations at the same time; quantizing one group of
layers per stage, with fine-tuning in between, lets the float layers still to come adapt to the
quantized ones before their own turn. The default order puts the least sensitive group first
(sensitivity of a group = sum of its layers' sensitivities), so the most fragile layers are
quantized last, when the rest of the network has already settled around quantized weights.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

MSFT_ORDERS = ("sensitivity", "forward", "backward")
"""Least sensitive group first; input to output; output to input."""


def msft_stages(
    groups: Mapping[str, Sequence[str]],
    layers: Collection[str],
    sensitivities: Mapping[str, float],
    order: str = "sensitivity",
) -> list[list[str]]:
    """The quantized layers split into stages, one per layer group that has any, in MSFT order.

    Args:
        groups: Group name -> its layer names, in forward order (a model's `layer_groups()`).
        layers: The layers the candidate quantizes (FP32 layers are in no stage).
        sensitivities: Layer name -> sensitivity (needed for the "sensitivity" order only).
        order: One of `MSFT_ORDERS`.

    Raises:
        ValueError: Unknown order, a layer in no group, or a missing sensitivity.
    """
    if order not in MSFT_ORDERS:
        raise ValueError(f"msft order {order!r}: expected one of {list(MSFT_ORDERS)}")
    grouped = {layer for members in groups.values() for layer in members}
    stray = sorted(set(layers) - grouped)
    if stray:
        raise ValueError(f"layers {stray} belong to no layer group {sorted(groups)}")
    stages = [[layer for layer in members if layer in layers] for members in groups.values()]
    stages = [stage for stage in stages if stage]
    if order == "backward":
        return stages[::-1]
    if order == "forward":
        return stages
    missing = sorted(layer for stage in stages for layer in stage if layer not in sensitivities)
    if missing:
        raise ValueError(f"msft order 'sensitivity': no sensitivity for layers {missing}")
    return sorted(stages, key=lambda stage: sum(sensitivities[layer] for layer in stage))


def stage_start_steps(stage_count: int, budget: int) -> list[int]:
    """Step at which each stage is quantized: stage `k` of `n` at `k * budget // n`."""
    return [index * budget // stage_count for index in range(stage_count)]
