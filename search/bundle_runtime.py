"""The runtime a bundle runs on, and its description as that runtime runs it.

The cost model prices a target, a profile plus a runtime (`hwcost.runtimes`); which onnxruntime
runtime a bundle's graph is follows from what the bundle quantizes. Its activations (config.json
`activation_bits`) make onnxruntime fuse its QuantizeLinear/DequantizeLinear pairs into integer
kernels (`onnxruntime-int8`); quantized weights alone are decoded in the graph into float kernels
(`onnxruntime-weight-only`); a bundle quantizing nothing is a float graph (`onnxruntime-fp32`).

The description `load_bundle` rebuilds is the weights' only (activations are quantized outside
the model's modules), so the activation bits are set on every layer, as the int8 runtime was
calibrated and validated (`hwcost.calibration.backends.StaticInt8Backend`).
"""

from __future__ import annotations

import dataclasses

from spaces.description import FLOAT_BITS, ModelDescription

INTEGER_RUNTIME = "onnxruntime-int8"
WEIGHT_ONLY_RUNTIME = "onnxruntime-weight-only"
FLOAT_RUNTIME = "onnxruntime-fp32"


def bundle_runtime(description: ModelDescription, activation_bits: int) -> str:
    """The `hwcost.runtimes` name of what onnxruntime runs a bundle of `description` and
    `activation_bits` as."""
    if activation_bits < FLOAT_BITS:
        return INTEGER_RUNTIME
    if any(layer.params > 0 and layer.weight_bits < FLOAT_BITS for layer in description.layers):
        return WEIGHT_ONLY_RUNTIME
    return FLOAT_RUNTIME


def executed_description(description: ModelDescription, activation_bits: int) -> ModelDescription:
    """`description` with every layer's activations at the bundle's `activation_bits`."""
    if activation_bits == FLOAT_BITS:
        return description
    layers = tuple(dataclasses.replace(layer, activation_bits=activation_bits) for layer in description.layers)
    return dataclasses.replace(description, layers=layers)


__all__ = ["FLOAT_RUNTIME", "INTEGER_RUNTIME", "WEIGHT_ONLY_RUNTIME", "bundle_runtime", "executed_description"]
