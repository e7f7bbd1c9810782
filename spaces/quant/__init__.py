"""Weight quantizers behind one `Quantizer` interface, and the bit-exact packed file format."""

from __future__ import annotations

from spaces.quant.base import SUPPORTED_WEIGHT_BITS, QuantizationError, QuantizedWeight, Quantizer
from spaces.quant.packing import PackedFileError, pack_weights, read_packed, unpack_weights, write_packed
from spaces.quant.uniform import UniformQuantizer

QUANTIZERS: dict[str, Quantizer] = {quantizer.name: quantizer for quantizer in (UniformQuantizer(),)}


def get_quantizer(name: str) -> Quantizer:
    """The quantizer registered as `name`; unknown names raise a `QuantizationError` listing the known ones."""
    if name not in QUANTIZERS:
        raise QuantizationError(f"unknown quantizer {name!r}; available: {sorted(QUANTIZERS)}")
    return QUANTIZERS[name]


__all__ = [
    "QUANTIZERS",
    "PackedFileError",
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
