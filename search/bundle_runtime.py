"""The runtime a bundle runs on.

The cost model prices a target, a profile plus a runtime (`hwcost.runtimes`); which onnxruntime
runtime a bundle's graph is follows from what the bundle quantizes. 8-bit activations (config.json
`activation_bits`) make onnxruntime fuse its QuantizeLinear/DequantizeLinear pairs into integer
kernels (`onnxruntime-int8`); narrower activation grids are clipped before each QuantizeLinear,
which no integer kernel absorbs, so such a bundle, like one quantizing its weights alone, runs
float kernels on weights decoded in the graph (`onnxruntime-weight-only`); a bundle quantizing
nothing is a float graph (`onnxruntime-fp32`).

The description `load_bundle` rebuilds already carries the activation bits on every layer
(`spaces.compress.finalize_compressed` describes a model with frozen activation quantizers so),
as the int8 runtime was calibrated and validated.
"""

from __future__ import annotations

from spaces.description import FLOAT_BITS, ModelDescription
from spaces.quant import INTEGER_ACTIVATION_BITS

INTEGER_RUNTIME = "onnxruntime-int8"
WEIGHT_ONLY_RUNTIME = "onnxruntime-weight-only"
FLOAT_RUNTIME = "onnxruntime-fp32"


def bundle_runtime(description: ModelDescription, activation_bits: int) -> str:
    """The `hwcost.runtimes` name of what onnxruntime runs a bundle of `description` and
    `activation_bits` as."""
    if activation_bits == INTEGER_ACTIVATION_BITS:
        return INTEGER_RUNTIME
    if any(layer.params > 0 and layer.weight_bits < FLOAT_BITS for layer in description.layers):
        return WEIGHT_ONLY_RUNTIME
    return FLOAT_RUNTIME


__all__ = ["FLOAT_RUNTIME", "INTEGER_RUNTIME", "WEIGHT_ONLY_RUNTIME", "bundle_runtime"]
