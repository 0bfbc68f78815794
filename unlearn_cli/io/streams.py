"""Atomic writes and `-` for stdin/stdout: the only way any command puts bytes on disk.

Usage:
    write_output("model.safetensors", data)   # temp file in the same folder, fsync, rename
    write_output("-", data)                    # stdout (refused when stdout is a terminal)
    data = read_input("mask.safetensors")      # or "-" for stdin
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from unlearn_cli.errors import UserError

STDIO = "-"


def read_input(path: str | Path, what: str = "file") -> bytes:
    """The bytes of `path`, or of stdin for `-`."""
    if str(path) == STDIO:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError(f"{what} '-' means stdin, but stdin is a terminal; pipe the {what} in or give a path")
        return sys.stdin.buffer.read()
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: {what} not found; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a {what}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror}); check its permissions") from None


def write_output(path: str | Path, data: bytes, binary: bool = True) -> None:
    """Write `data` to `path` atomically, or to stdout for `-`.

    A failed or interrupted write leaves no partial file and never touches an existing file at `path`.
    """
    if str(path) == STDIO:
        if binary and sys.stdout.isatty():
            raise UserError("refusing to write binary data to a terminal; redirect it (`> file`) or pipe it (`| unlearn …`)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist; create it first")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise UserError(f"{path}: cannot write in {folder} ({error.strerror}); choose a writable folder") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise UserError(f"{path}: write failed ({error.strerror}); nothing was written") from None
        raise


def check_writable(path: str | Path) -> None:
    """Fail before long work when the output could not be written at the end."""
    if str(path) == STDIO:
        if sys.stdout.isatty():
            raise UserError("refusing to write binary data to a terminal; redirect it (`> file`) or pipe it (`| unlearn …`)")
        return
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{path}: folder {folder} is not writable; choose another output path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file path for the output")
