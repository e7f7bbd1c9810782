"""Bit-exact packed weights file: the deployed model's storage, and the definition of `size_bytes`.

Layout (little-endian)::

    b"SPKQ" | version u8 | entry count u32
    entry:  name length u16 | name (utf-8) | kind u8 (0 float32, 1 quantized, 2 alias, 3 float16) | body
            float32:   shape | data (4 bytes per element)
            float16:   shape | data (2 bytes per element)
            quantized: shape | bits u8 | quantizer name length u8 | quantizer name | side count u8
                       | side bits u8 (32 or 16)
                       side:  name length u8 | name | shape | data (4 or 2 bytes per element)
                       codes packed at exactly `bits` bits each, LSB first, ceil(n * bits / 8) bytes
            alias:     target name length u16 | target name (an earlier entry)
    shape:  ndim u8 | dims u32 each

A float16 tensor in the entries is stored as float16 (kind 3); side tensors are stored at their
`QuantizedWeight.side_bits`. Reading gives float32 tensors back either way, so nothing downstream
sees a half-precision tensor; the values are the float16 ones. Version 1 files (before float16
storage: no kind 3, no side bits byte) still read.

An entry that is the very object of an earlier entry (a tensor shared by several layers) is
written as an alias of it, so shared weights are stored once; reading gives both names the
same object back.

Nothing is padded or aligned, so the file is as small as the format allows and its length is
the size a report may claim.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch

from spaces.quant.base import QuantizedWeight

MAGIC = b"SPKQ"
VERSION = 2
_READABLE_VERSIONS = (1, 2)
_FLOAT, _QUANTIZED, _ALIAS, _HALF = 0, 1, 2, 3
_FORMATS = {32: "<f4", 16: "<f2"}
"""Storage bits -> numpy little-endian format of a float tensor."""

PackedEntry = Union[torch.Tensor, QuantizedWeight]


class PackedFileError(ValueError):
    """A packed weights file is truncated, corrupt or of an unknown version."""


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integer codes at exactly `bits` bits each (LSB first)."""
    values = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if values.size and int(values.max()) >= 2**bits:
        raise ValueError(f"code {int(values.max())} does not fit in {bits} bits")
    bit_planes = (values[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(bit_planes.reshape(-1), bitorder="little").tobytes()


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: `count` codes of `bits` bits each, as uint8."""
    bit_planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (bit_planes.reshape(count, bits).astype(np.uint16) @ weights).astype(np.uint8)


def pack_weights(entries: Mapping[str, PackedEntry]) -> bytes:
    """Serialise named float tensors and quantized weights into the packed format."""
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<BI", VERSION, len(entries)))
    first_name: dict[int, str] = {}
    for name, entry in entries.items():
        _write_name(out, name, "<H")
        target = first_name.setdefault(id(entry), name)
        if target != name:
            out.write(struct.pack("<B", _ALIAS))
            _write_name(out, target, "<H")
        elif isinstance(entry, QuantizedWeight):
            out.write(struct.pack("<B", _QUANTIZED))
            _write_shape(out, entry.codes.shape)
            out.write(struct.pack("<B", entry.bits))
            _write_name(out, entry.quantizer, "<B")
            out.write(struct.pack("<BB", len(entry.side), entry.side_bits))
            for side_name, tensor in entry.side.items():
                _write_name(out, side_name, "<B")
                _write_float_tensor(out, tensor, entry.side_bits)
            out.write(pack_codes(entry.codes.numpy(), entry.bits))
        else:
            half = entry.dtype == torch.float16
            out.write(struct.pack("<B", _HALF if half else _FLOAT))
            _write_float_tensor(out, entry, 16 if half else 32)
    return out.getvalue()


def unpack_weights(data: bytes) -> dict[str, PackedEntry]:
    """Parse a packed file back into float tensors and `QuantizedWeight`s (codes bit for bit)."""
    reader = io.BytesIO(data)
    if _read(reader, 4) != MAGIC:
        raise PackedFileError("not a packed weights file (bad magic)")
    version, count = struct.unpack("<BI", _read(reader, 5))
    if version not in _READABLE_VERSIONS:
        raise PackedFileError(f"packed weights version {version} not supported (expected one of {list(_READABLE_VERSIONS)})")
    entries: dict[str, PackedEntry] = {}
    for _ in range(count):
        name = _read_name(reader, "<H")
        (kind,) = struct.unpack("<B", _read(reader, 1))
        if kind == _FLOAT or (kind == _HALF and version >= 2):
            entries[name] = _read_float_tensor(reader, 16 if kind == _HALF else 32)
        elif kind == _QUANTIZED:
            shape = _read_shape(reader)
            bits, = struct.unpack("<B", _read(reader, 1))
            quantizer = _read_name(reader, "<B")
            (side_count,) = struct.unpack("<B", _read(reader, 1))
            side_bits = struct.unpack("<B", _read(reader, 1))[0] if version >= 2 else 32
            if side_bits not in _FORMATS:
                raise PackedFileError(f"entry {name!r}: side data of {side_bits} bits (expected 32 or 16)")
            side = {}
            for _ in range(side_count):
                side_name = _read_name(reader, "<B")
                side[side_name] = _read_float_tensor(reader, side_bits)
            numel = int(np.prod(shape, dtype=np.int64))
            codes = unpack_codes(_read(reader, (numel * bits + 7) // 8), numel, bits)
            entries[name] = QuantizedWeight(quantizer, bits, torch.from_numpy(codes.reshape(shape)), side, side_bits)
        elif kind == _ALIAS:
            target = _read_name(reader, "<H")
            if target not in entries:
                raise PackedFileError(f"entry {name!r}: alias of {target!r}, which no earlier entry is")
            entries[name] = entries[target]
        else:
            raise PackedFileError(f"entry {name!r}: unknown kind {kind}")
    if reader.read(1):
        raise PackedFileError("trailing bytes after the last entry")
    return entries


def write_packed(path: str | os.PathLike, entries: Mapping[str, PackedEntry]) -> int:
    """Write the packed file and return its length in bytes (the model's `size_bytes`)."""
    data = pack_weights(entries)
    Path(path).write_bytes(data)
    return len(data)


def read_packed(path: str | os.PathLike) -> dict[str, PackedEntry]:
    """Read a packed file; a corrupt file raises `PackedFileError` naming it."""
    try:
        return unpack_weights(Path(path).read_bytes())
    except PackedFileError as error:
        raise PackedFileError(f"{path}: {error}") from None


def _read(reader: BinaryIO, size: int) -> bytes:
    chunk = reader.read(size)
    if len(chunk) != size:
        raise PackedFileError("file is truncated")
    return chunk


def _write_name(out: BinaryIO, name: str, length_format: str) -> None:
    encoded = name.encode()
    out.write(struct.pack(length_format, len(encoded)) + encoded)


def _read_name(reader: BinaryIO, length_format: str) -> str:
    (length,) = struct.unpack(length_format, _read(reader, struct.calcsize(length_format)))
    raw = _read(reader, length)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PackedFileError(f"malformed name {raw[:40]!r}: not UTF-8 text") from None


def _write_shape(out: BinaryIO, shape: torch.Size) -> None:
    out.write(struct.pack(f"<B{len(shape)}I", len(shape), *shape))


def _read_shape(reader: BinaryIO) -> tuple[int, ...]:
    (ndim,) = struct.unpack("<B", _read(reader, 1))
    return struct.unpack(f"<{ndim}I", _read(reader, 4 * ndim))


def _write_float_tensor(out: BinaryIO, tensor: torch.Tensor, bits: int) -> None:
    _write_shape(out, tensor.shape)
    out.write(tensor.detach().to(torch.float32).contiguous().numpy().astype(_FORMATS[bits]).tobytes())


def _read_float_tensor(reader: BinaryIO, bits: int) -> torch.Tensor:
    shape = _read_shape(reader)
    numel = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(_read(reader, bits // 8 * numel), dtype=_FORMATS[bits]).reshape(shape)
    return torch.from_numpy(array.astype(np.float32))
