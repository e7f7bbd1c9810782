"""Weight quantizers behind one `Quantizer` interface, the packed weights file, activation fake-quantization.

Registered weight quantizers (name: bits):

- "uniform", "uniform-asym", "uniform-mse", "uniform-tensor": 2..8 (Li et al. 2022); "uniform-reduced",
  "uniform-mse-reduced", "uniform-tensor-reduced": the symmetric ones on the range of onnxruntime's
  integer kernels (levels within ±64 at 8 bits; `spaces.quant.integer_kernels`)
- "pow2": 2..8 (Li et al. 2022)
- "kmeans" (one codebook per layer), "kmeans-group4" (four channel groups): 1..8 (Liu, Wang, Qian 2024)
- "binary", "binary-adaptive": 1 (Liu, Wang, Qian 2024)

Quantization-aware training of any of them: `spaces.quant.qat` (trainable fake-quantizers that
export codes in these same formats).

A new family is one module with a `Quantizer` subclass (its quantize/dequantize, and, where the
defaults do not fit, its `fake_quantizer`, `decoding`, `table_lookup` and exact int8 form,
`largest_integer_level`/`integer_weight`) plus its line in
`QUANTIZERS`; training, ONNX export and the cost model find everything else through it.
"""

from __future__ import annotations

from spaces.quant.activation import ActivationQuantizer
from spaces.quant.base import SUPPORTED_WEIGHT_BITS, FakeQuantizer, QatOptions, QuantizationError, QuantizedWeight, Quantizer
from spaces.quant.binary import AdaptiveBinaryQuantizer, BinaryQuantizer
from spaces.quant.decoding import CodebookLookup, Decoding, DequantizeLinear, ScaledTable
from spaces.quant.integer_kernels import INTEGER_ACTIVATION_BITS, INTEGER_KERNEL_LEVEL, IntegerWeight
from spaces.quant.kmeans import KMeansQuantizer
from spaces.quant.packing import PackedFileError, pack_weights, read_packed, unpack_weights, write_packed
from spaces.quant.power_of_two import PowerOfTwoQuantizer
from spaces.quant.uniform import UniformQuantizer

QUANTIZERS: dict[str, Quantizer] = {
    quantizer.name: quantizer
    for quantizer in (
        UniformQuantizer(),
        UniformQuantizer(symmetric=False),
        UniformQuantizer(clipping="mse"),
        UniformQuantizer(per_channel=False),
        UniformQuantizer(reduced_range=True),
        UniformQuantizer(clipping="mse", reduced_range=True),
        UniformQuantizer(per_channel=False, reduced_range=True),
        PowerOfTwoQuantizer(),
        KMeansQuantizer(),
        KMeansQuantizer(groups=4),
        BinaryQuantizer(),
        AdaptiveBinaryQuantizer(),
    )
}


def get_quantizer(name: str) -> Quantizer:
    """The quantizer registered as `name`; unknown names raise a `QuantizationError` listing the known ones."""
    if name not in QUANTIZERS:
        raise QuantizationError(f"unknown quantizer {name!r}; available: {sorted(QUANTIZERS)}")
    return QUANTIZERS[name]


__all__ = [
    "QUANTIZERS",
    "ActivationQuantizer",
    "AdaptiveBinaryQuantizer",
    "BinaryQuantizer",
    "CodebookLookup",
    "Decoding",
    "DequantizeLinear",
    "FakeQuantizer",
    "INTEGER_ACTIVATION_BITS",
    "INTEGER_KERNEL_LEVEL",
    "IntegerWeight",
    "KMeansQuantizer",
    "PackedFileError",
    "PowerOfTwoQuantizer",
    "SUPPORTED_WEIGHT_BITS",
    "QatOptions",
    "QuantizationError",
    "QuantizedWeight",
    "Quantizer",
    "ScaledTable",
    "UniformQuantizer",
    "get_quantizer",
    "pack_weights",
    "read_packed",
    "unpack_weights",
    "write_packed",
]
