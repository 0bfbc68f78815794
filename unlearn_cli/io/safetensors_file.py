"""Validated reading and writing of safetensors bytes (header checked before any tensor is built).

The header is parsed here first, so a hostile file is refused before memory is allocated for it:
every tensor's byte range must lie inside the file and match its dtype and shape, the ranges must
tile the data section (no overlap, no gap), and nothing in the file is ever executed. The header
checks and the numpy views import no torch (`unlearn info`, `unlearn mask info`); torch is imported
by the functions that build or take torch tensors.

Usage:
    arrays, metadata = safetensors_arrays(data, source="model.safetensors")   # {name: (dtype, numpy view)}
    tensors, metadata = parse_safetensors(data, source="model.safetensors")   # torch tensors
    data = dump_safetensors(tensors, metadata)
"""

from __future__ import annotations

import functools
import json
import math
import struct
from typing import TYPE_CHECKING

import numpy as np

from unlearn_cli.errors import UserError
from unlearn_cli.limits import check_size, limit, load_json

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 64 * 1024 * 1024
# the dtypes unlearn writes: safetensors name -> torch's name (torch.float32 is "float32")
TORCH_NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
               "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
# safetensors name -> numpy dtype of a view of its bytes (little-endian); numpy has no bfloat16 or float8: those are
# viewed as their raw bits (unsigned integers of their width)
NUMPY_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "F8_E4M3": "u1", "F8_E5M2": "u1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
    "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8",
}
# floating dtypes -> the bits that are all ones exactly in Inf and NaN (the exponent; float8 e4m3 has no Inf, its NaN
# is exponent and mantissa all ones)
NONFINITE_BITS = {"F8_E4M3": 0x7F, "F8_E5M2": 0x7C, "F16": 0x7C00, "BF16": 0x7F80, "F32": 0x7F800000,
                  "F64": 0x7FF0000000000000}
_UNSIGNED = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_TORCH_BITS = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}  # viewed as bits by numpy
CHUNK = 1 << 20  # elements checked at once: a check's temporaries stay small whatever the tensor's size


@functools.cache
def torch_dtypes() -> dict[torch.dtype, str]:
    """torch dtype -> safetensors name, of the dtypes unlearn writes (imports torch: call it where torch is used)."""
    import torch

    return {getattr(torch, name): stored for stored, name in TORCH_NAMES.items()}


def torch_name(dtype: str) -> str:
    """How torch prints stored dtype `dtype` ("F32" -> "torch.float32"); a dtype unlearn never writes as stored."""
    return f"torch.{TORCH_NAMES[dtype]}" if dtype in TORCH_NAMES else dtype


def _header(data: bytes, source: str) -> dict:
    def bad(reason: str) -> UserError:
        return UserError(f"{source}: not a valid safetensors file ({reason}); was it truncated or is it another format?")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, too short for a header")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > MAX_HEADER_BYTES:
        raise UserError(f"{source}: not a valid safetensors file (its header claims {header_length:,} bytes, beyond "
                        f"the limit of {MAX_HEADER_BYTES:,} bytes of a header); it is not a file unlearn wrote")
    if header_length > len(data) - 8:
        raise bad(f"header claims {header_length} bytes but the file has {len(data) - 8} after the length field")
    try:
        header = load_json(memoryview(data)[8 : 8 + header_length], source, "safetensors header")  # not copied
    except UserError as error:
        raise bad(f"header is not JSON: {str(error).removeprefix(source + ': ')}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    body = len(data) - 8 - header_length
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
                raise bad("metadata is not a string-to-string map")
            for key, value in entry.items():  # before any reader copies, parses or prints one
                check_size(len(value) if len(value) > limit("metadata_field_bytes") else len(value.encode()),
                           "metadata_field_bytes", source, f"metadata field {key[:40]!r} size in bytes")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} has a malformed entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise bad(f"tensor {name!r} has a malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {name!r} has malformed data offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= body:
            raise bad(f"tensor {name!r} claims bytes {begin}..{end} but the data section has {body}")
        if math.prod(shape) * DTYPE_BYTES[dtype] != end - begin:
            raise bad(f"tensor {name!r}: shape {shape} of {dtype} does not match its {end - begin} bytes")
    _check_tiling(header, body, bad)
    return header


def _check_tiling(header: dict, body: int, bad) -> None:
    """The tensors' byte ranges, in order, must cover the data section exactly, as the safetensors library requires:
    a range that overlaps another or leaves a gap is refused here, so a reader of numpy views accepts what it does."""
    end = 0
    for begin, stop, name in sorted((entry["data_offsets"][0], entry["data_offsets"][1], name)
                                    for name, entry in header.items() if name != "__metadata__"):
        if begin != end:
            raise bad(f"tensor {name!r} starts at byte {begin} of the data section, not at {end} where the tensors "
                      f"before it end")
        end = stop
    if end != body:
        raise bad(f"the tensors end at byte {end} but the data section has {body}")


def safetensors_arrays(data: bytes, source: str) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str]]:
    """({tensor name: (dtype, numpy view of its bytes in `data`)}, metadata), from the validated header: nothing is
    copied (the views are read-only, as `data` is); BF16 and float8 tensors are viewed as their raw bits."""
    header = _header(data, source)
    start = 8 + struct.unpack("<Q", data[:8])[0]
    arrays = {}
    for name, entry in header.items():
        if name != "__metadata__":
            dtype, (begin, end) = entry["dtype"], entry["data_offsets"]
            view = np.frombuffer(data, dtype=NUMPY_DTYPES[dtype], count=(end - begin) // DTYPE_BYTES[dtype],
                                 offset=start + begin)
            arrays[name] = (dtype, view.reshape(entry["shape"]))
    return arrays, dict(header.get("__metadata__", {}))


def nonfinite(dtype: str, values: np.ndarray) -> bool:
    """Whether a tensor of stored dtype `dtype`, viewed by `safetensors_arrays`, holds a NaN or an Inf (judged by its
    bits: the exponent all ones); False for the integer and bool dtypes."""
    if dtype not in NONFINITE_BITS:
        return False
    bits, mask = values.reshape(-1).view(_UNSIGNED[DTYPE_BYTES[dtype]]), NONFINITE_BITS[dtype]
    return any(bool(((bits[i : i + CHUNK] & mask) == mask).any()) for i in range(0, len(bits), CHUNK))


def as_tensor(dtype: str, values: np.ndarray) -> torch.Tensor:
    """A torch tensor of its own holding a `safetensors_arrays` view (copied: the views are read-only), of stored
    dtype `dtype` (the raw bits of BF16 and float8 reinterpreted as those)."""
    import torch

    tensor = torch.from_numpy(values.copy())
    return tensor.view(getattr(torch, _TORCH_BITS[dtype])) if dtype in _TORCH_BITS else tensor


def torch_tensors(arrays: dict[str, tuple[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """`safetensors_arrays`' views as torch tensors of their own."""
    return {name: as_tensor(dtype, values) for name, (dtype, values) in arrays.items()}


def parse_safetensors(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file given as bytes; UserError if malformed."""
    arrays, metadata = safetensors_arrays(data, source)
    return torch_tensors(arrays), metadata


def dump_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize `tensors` with string `metadata` in the safetensors layout, byte-for-byte reproducibly.

    The header lists metadata keys and tensors in sorted order (the reference writer orders metadata
    by hash, so equal inputs could give different files), padded with spaces to 8 bytes.
    """
    import torch

    entries: dict[str, object] = {"__metadata__": {key: str(metadata[key]) for key in sorted(metadata)}}
    chunks, offset, stored = [], 0, torch_dtypes()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in stored:
            raise ValueError(f"tensor {name} has dtype {tensor.dtype}, which safetensors cannot store")
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        entries[name] = {"dtype": stored[tensor.dtype], "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)
