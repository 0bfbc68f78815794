"""Validated reading and writing of safetensors bytes (header checked before any tensor is built).

The header is parsed here first, so a hostile file is refused before memory is allocated for it:
every tensor's byte range must lie inside the file and match its dtype and shape, and nothing in
the file is ever executed.

Usage:
    tensors, metadata = parse_safetensors(data, source="model.safetensors")
    data = dump_safetensors(tensors, metadata)
"""

from __future__ import annotations

import json
import math
import struct

import torch
from safetensors.torch import load as load_tensors

from unlearn_cli.errors import UserError
from unlearn_cli.limits import check_size, limit, load_json

MAX_HEADER_BYTES = 64 * 1024 * 1024
TORCH_DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
}
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


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
    return header


def safetensors_layout(data: bytes, source: str) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:
    """({tensor name: (dtype, shape)}, metadata) from the validated header alone: nothing is built yet."""
    header = _header(data, source)
    layout = {name: (entry["dtype"], entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    return layout, dict(header.get("__metadata__", {}))


def parse_safetensors(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file given as bytes; UserError if malformed."""
    header = _header(data, source)
    try:
        tensors = load_tensors(data)
    except Exception as error:  # the library's own checks (overlapping ranges, …)
        raise UserError(f"{source}: not a valid safetensors file ({str(error).splitlines()[0]})") from None
    return tensors, dict(header.get("__metadata__", {}))


def dump_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize `tensors` with string `metadata` in the safetensors layout, byte-for-byte reproducibly.

    The header lists metadata keys and tensors in sorted order (the reference writer orders metadata
    by hash, so equal inputs could give different files), padded with spaces to 8 bytes.
    """
    entries: dict[str, object] = {"__metadata__": {key: str(metadata[key]) for key in sorted(metadata)}}
    chunks, offset = [], 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in TORCH_DTYPES:
            raise ValueError(f"tensor {name} has dtype {tensor.dtype}, which safetensors cannot store")
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        entries[name] = {"dtype": TORCH_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)
