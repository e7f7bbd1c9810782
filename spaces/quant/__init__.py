"""Weight quantizers behind one `Quantizer` interface, the packed weights file, activation fake-quantization.

Registered weight quantizers (name: bits):

- "uniform", "uniform-asym", "uniform-mse", "uniform-tensor": 2..8 (Li et al. 2022)
- "pow2": 2..8 (Li et al. 2022)
- "kmeans" (one codebook per layer), "kmeans-group4" (four channel groups): 1..8 (Liu, Wang, Qian 2024)
- "binary", "binary-adaptive": 1 (Liu, Wang, Qian 2024)

Quantization-aware training of any of them: `spaces.quant.qat` (trainable fake-quantizers that
export codes in these same formats).
"""

from __future__ import annotations

from spaces.quant.activation import ActivationQuantizer
from spaces.quant.base import SUPPORTED_WEIGHT_BITS, QuantizationError, QuantizedWeight, Quantizer
from spaces.quant.binary import AdaptiveBinaryQuantizer, BinaryQuantizer
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
    "KMeansQuantizer",
    "PackedFileError",
    "PowerOfTwoQuantizer",
    "SUPPORTED_WEIGHT_BITS",
    "QuantizationError",
    "QuantizedWeight",
    "Quantizer",
    "UniformQuantizer",
    "get_quantizer",
    "pack_weights",
    "read_packed",
    "unpack_weights",
    "write_packed",
]
