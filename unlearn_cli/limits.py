"""Size limits that every reader checks before it builds anything (documented in docs/limits.md).

A number read from a file sizes nothing until it has been checked against one of these. Each limit a
real user could need to raise is read from an environment variable, e.g. `UNLEARN_MAX_PARAMETERS=4e9`.

Usage:
    limit("parameters")                      # 2_000_000_000, or $UNLEARN_MAX_PARAMETERS
    document = load_json(data, "forget.json", "forget set")   # depth and integer range checked
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

from unlearn_cli.errors import UserError

INT64_MAX = 2**63 - 1

# name -> (default, what it bounds); each can be raised with UNLEARN_MAX_<NAME>.
LIMITS: dict[str, tuple[int, str]] = {
    "tensor_file_bytes": (16 * 2**30, "bytes of a checkpoint or mask file"),
    "json_bytes": (256 * 2**20, "bytes of a forget-set, results or index file"),
    "config_bytes": (2**20, "bytes of a YAML config file"),
    "metadata_field_bytes": (2**20, "bytes of one metadata field of a checkpoint or mask"),
    "json_depth": (32, "nesting depth of any JSON document or metadata field"),
    "json_values": (2**23, "values (numbers, strings, lists, objects, keys) of one JSON document or index list"),
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


SCAN_CHUNK = 1 << 20  # bytes scanned at a time: the scan's memory is a few times this, whatever the document's size


@functools.cache
def _byte_tables():
    """(step, before_value): byte -> +1 where it opens a list or object and -1 where it closes one; byte -> whether a
    value or key follows it. Built on the first read: a command's --help, which reads no file, needs no numpy."""
    import numpy as np

    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    before_value = np.zeros(256, dtype=bool)
    before_value[[ord(","), ord(":"), ord("["), ord("{")]] = True
    return step, before_value


@dataclass
class JsonShape:
    """What parsing a JSON text would build, measured on its bytes: the deepest nesting of `[`/`{`, the number of
    values (numbers, strings, lists, objects and keys; a bound: one per `,` `:` `[` `{` outside strings, plus one),
    and what its text would cost decoded: its UTF-8 continuation bytes, its characters in U+0100…U+FFFF (`bmp`, 2
    bytes a character in a Python str) and beyond U+FFFF (`wide`: one makes the whole text 4 bytes a character)."""

    depth: int = 0
    values: int = 1
    continuation: int = 0
    bmp: int = 0
    wide: int = 0

    def characters(self, size: int) -> int:
        """Characters of the text of a document of `size` bytes."""
        return size - self.continuation


def json_shape(data: bytes | memoryview, stop_depth: int | None = None, stop_values: int | None = None) -> JsonShape:
    """The JsonShape of JSON text `data`, scanned chunk by chunk in constant memory (exact for valid JSON, and for the
    valid part that a parser would read of invalid JSON); it returns early once `stop_depth` or `stop_values` is
    passed. Strings are left out: an escaped backslash or quote (`\\\\`, `\\"`) is blanked before quotes are counted;
    the bytes beyond ASCII are counted in every chunk that has any."""
    import numpy as np

    step, before_value = _byte_tables()
    shape, depth, inside, escaped = JsonShape(), 0, 0, False
    for start in range(0, len(data), SCAN_CHUNK):
        chunk = bytes(data[start:start + SCAN_CHUNK])
        if not chunk.isascii():  # count what decoding builds: lead bytes C4…EF start U+0100…U+FFFF, F0… beyond
            codes = np.frombuffer(chunk, dtype=np.uint8)
            leads, wide = int(np.count_nonzero(codes >= 0xC0)), int(np.count_nonzero(codes >= 0xF0))
            shape.continuation += int(np.count_nonzero(codes >= 0x80)) - leads
            shape.bmp += int(np.count_nonzero(codes >= 0xC4)) - wide
            shape.wide += wide
        if escaped:  # the previous chunk ended in a backslash that escapes this chunk's first byte
            chunk = b"_" + chunk[1:]
        chunk = chunk.replace(b"\\\\", b"__").replace(b'\\"', b"__")
        escaped = chunk.endswith(b"\\")
        codes = np.frombuffer(chunk, dtype=np.uint8)
        quotes = codes == ord('"')
        count = int(np.count_nonzero(quotes))
        if count:  # keep what lies outside strings (a closing quote is outside, and dropped)
            codes = codes[(((np.cumsum(quotes, dtype=np.int32) + inside) & 1) == 0) & ~quotes]
            inside = (inside + count) & 1
        elif inside:  # all of it within one string
            continue
        shape.values += int(np.count_nonzero(before_value[codes]))
        steps = step[codes]
        steps = steps[steps != 0]
        if steps.size:
            levels = np.cumsum(steps, dtype=np.int32) + depth
            shape.depth, depth = max(shape.depth, int(levels.max())), int(levels[-1])
        if (stop_depth is not None and shape.depth > stop_depth) or (stop_values is not None and shape.values > stop_values):
            break
    return shape


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not -INT64_MAX - 1 <= int(text) <= INT64_MAX:
        raise ValueError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is outside the 64-bit range")
    return int(text)


def check_values(count: int, source: str, what: str, at_least: bool = False) -> None:
    """UserError when a document or index list holds more values than limit `json_values`: parsing builds a Python
    object per value, so this bounds a reader's memory per input byte (docs/limits.md)."""
    bound = limit("json_values")
    if count > bound:
        raise UserError(f"{source}: {what} holds {'more than ' if at_least else ''}{bound if at_least else count:,} "
                        f"values, beyond the limit of {bound:,} {LIMITS['json_values'][1]}; if it is genuine, raise "
                        f"it with UNLEARN_MAX_JSON_VALUES")


def load_json(data: bytes | memoryview | str, source: str, what: str, depth_limit: str = "json_depth"):
    """Parse JSON text whose depth, number of values and integers are checked first (the first two on its bytes,
    before anything is built), its text decoded no wider than needed (_narrow_text); every defect is a one-line
    UserError."""
    raw = data.encode() if isinstance(data, str) else data
    shape = json_shape(raw, stop_depth=limit(depth_limit), stop_values=limit("json_values"))
    if shape.depth > limit(depth_limit):
        raise UserError(f"{source}: {what} is nested {shape.depth} levels deep, beyond the limit of {limit(depth_limit)}; "
                        f"it is not a file unlearn wrote")
    check_values(shape.values, source, what, at_least=True)
    try:
        return json.loads(_narrow_text(raw, shape), parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise UserError(f"{source}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{source}: malformed {what} JSON ({error.msg} at line {error.lineno})") from None
    except ValueError as error:  # _bounded_int
        raise UserError(f"{source}: {what}: {error}") from None


def _narrow_text(raw: bytes | memoryview, shape: JsonShape) -> str:
    """The text of UTF-8 JSON `raw` (whose JsonShape is `shape`) as the narrowest Python str that parses to the same
    value: one character beyond U+FFFF makes a str 4 bytes a character, so a 255 MiB document of ASCII and one emoji
    would take 1 GiB as text (beside its parsed strings, another 1 GiB). When writing the characters beyond U+FFFF
    (or all beyond U+00FF) as JSON escapes (a surrogate pair `\\ud83d\\ude00`, `\\u0100`) makes the text smaller, they
    are written so; json reads the escapes back as the same characters, in strings and keys alike."""
    characters = shape.characters(len(raw))
    plain = characters * (4 if shape.wide else 2 if shape.bmp else 1)
    escape_wide = (characters + 11 * shape.wide) * (2 if shape.bmp else 1)  # 12 characters for one of 1
    escape_all = characters + 11 * shape.wide + 5 * shape.bmp  # and 6 for one of 1
    if min(escape_wide, escape_all) >= plain:
        return str(raw, "utf-8")
    return _escaped_text(raw, 0xFF if escape_all < escape_wide else 0xFFFF)


def _escaped_text(raw: bytes | memoryview, beyond: int) -> str:
    """The text of UTF-8 `raw` with every UTF-16 code unit of a character beyond `beyond` (0xFF or 0xFFFF) written
    as a `\\uXXXX` escape, decoded SCAN_CHUNK bytes at a time (each piece 2 bytes a character at most). Such a character
    after an odd run of backslashes is malformed JSON (no escape starts with it): JSONDecodeError naming its line, so
    that an escape cannot make it well-formed."""
    import numpy as np

    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).astype("<u2")
    pieces, start, backslashes, lines = [], 0, 0, 1  # backslashes: the run that ended the previous piece
    while start < len(raw):
        end = min(start + SCAN_CHUNK, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # never split a character
            end += 1
        units = np.frombuffer(str(raw[start:end], "utf-8").encode("utf-16-le"), dtype="<u2")
        start = end
        escaped = units > 0xFF if beyond == 0xFF else (units & 0xF800) == 0xD800  # beyond 0xFFFF: a surrogate pair
        hits = np.flatnonzero(escaped)
        others = np.flatnonzero(units != ord("\\"))
        run_before = backslashes
        backslashes = units.size - 1 - int(others[-1]) if others.size else backslashes + units.size
        if hits.size:
            before = np.searchsorted(others, hits) - 1
            runs = np.where(before >= 0, hits - 1 - others[np.maximum(before, 0)], hits + run_before)
            if np.any(runs & 1):
                first = int(hits[np.argmax(runs & 1)])
                error = json.JSONDecodeError("Invalid \\escape", "", 0)
                error.lineno = lines + int(np.count_nonzero(units[:first] == ord("\n")))
                raise error
            target = np.arange(units.size) + 5 * (np.cumsum(escaped) - escaped)  # each hit's unit moves 5 on
            out = np.empty(units.size + 5 * hits.size, dtype="<u2")
            out[target] = units
            at, hit_units = target[hits], units[hits]
            out[at], out[at + 1] = ord("\\"), ord("u")
            for index, shift in enumerate((12, 8, 4, 0)):
                out[at + 2 + index] = digits[(hit_units >> shift) & 0xF]
        lines += int(np.count_nonzero(units == ord("\n")))
        if hits.size:
            units = out
        pieces.append(units.tobytes().decode("utf-16-le"))
    return "".join(pieces)
