"""Size limits that every reader checks before it builds anything (documented in docs/limits.md).

A number read from a file sizes nothing until it has been checked against one of these. Each limit a
real user could need to raise is read from an environment variable, e.g. `UNLEARN_MAX_PARAMETERS=4e9`.

Usage:
    limit("parameters")                      # 2_000_000_000, or $UNLEARN_MAX_PARAMETERS
    document = load_json(data, "forget.json", "forget set")   # depth and integer range checked
    value = load_json_field(meta["config"], "m.safetensors", "metadata field 'config'")   # and its size
"""

from __future__ import annotations

import json
import os
import re

from unlearn_cli.errors import UserError

INT64_MAX = 2**63 - 1

# name -> (default, what it bounds); each can be raised with UNLEARN_MAX_<NAME>.
LIMITS: dict[str, tuple[int, str]] = {
    "tensor_file_bytes": (16 * 2**30, "bytes of a checkpoint or mask file"),
    "json_bytes": (256 * 2**20, "bytes of a forget-set, results or index file"),
    "config_bytes": (2**20, "bytes of a YAML config file"),
    "metadata_field_bytes": (2**20, "bytes of one JSON field of a checkpoint's or mask's metadata"),
    "json_depth": (32, "nesting depth of any JSON document or metadata field"),
    "parameters": (2_000_000_000, "parameter scalars of a model built from options or metadata"),
    "tensors": (10_000, "parameter and buffer tensors of a model"),
    "activations": (2**28, "activation scalars of one example's forward pass"),
    "input_elements": (2**24, "scalars of one input image (channels × height × width)"),
    "dataset_elements": (2**30, "scalars of a generated (synthetic) dataset"),
    "seeds": (4096, "seeds of one --seeds option (models one command builds)"),
    "pool_models": (4096, "checkpoints in one pool of `unlearn audit`"),
    "candidates": (1000, "candidates of one `unlearn tune` grid"),
}


def limit(name: str) -> int:
    """The limit `name`, or the value of $UNLEARN_MAX_<NAME> when that is set to a whole number ≥ 1 (digits, or an
    exponent: 4e9)."""
    default, what = LIMITS[name]
    variable = f"UNLEARN_MAX_{name.upper()}"
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        number = None if text.strip().isdigit() else float(text)
        if number is not None and not number.is_integer():
            raise ValueError
        value = int(text) if number is None else int(number)
        if value < 1:
            raise ValueError
    except (ValueError, OverflowError):
        raise UserError(f"${variable}={text!r}: must be a whole number ≥ 1 (it counts {what}; an exponent is "
                        f"allowed, as in 4e9), e.g. {default}") from None
    return value


def check_size(size: int, name: str, source: str, what: str) -> None:
    """UserError when `size` exceeds limit `name`, naming the variable that raises it."""
    bound = limit(name)
    if size > bound:
        raise UserError(f"{source}: {what} {size:,} exceeds the limit of {bound:,} {LIMITS[name][1]}; "
                        f"if it is genuine, raise it with UNLEARN_MAX_{name.upper()}")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest nesting of `[`/`{` in a JSON text, strings left out (a linear scan, no recursion)."""
    import numpy as np  # here: a command's --help, which reads no file, needs no numpy

    skeleton = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    steps = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not -INT64_MAX - 1 <= int(text) <= INT64_MAX:
        raise ValueError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is outside the 64-bit range")
    return int(text)


def load_json(data: bytes | str, source: str, what: str, depth_limit: str = "json_depth"):
    """Parse JSON text whose depth and integers are checked first; every defect is a one-line UserError."""
    raw = data.encode() if isinstance(data, str) else data
    depth = json_depth(raw)
    if depth > limit(depth_limit):
        raise UserError(f"{source}: {what} is nested {depth} levels deep, beyond the limit of {limit(depth_limit)}; "
                        f"it is not a file unlearn wrote")
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise UserError(f"{source}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{source}: malformed {what} JSON ({error.msg} at line {error.lineno})") from None
    except ValueError as error:  # _bounded_int
        raise UserError(f"{source}: {what}: {error}") from None


def load_json_field(text: str, source: str, what: str):
    """A JSON-valued metadata field of a checkpoint or mask: its size and depth checked, then parsed."""
    check_size(len(text.encode()), "metadata_field_bytes", source, f"{what} size in bytes")
    return load_json(text, source, what)
