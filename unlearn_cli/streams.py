"""Reading and writing files safely, and `-` for stdin/stdout: the only way any command touches a file.

Reads are sized before they happen: only regular files, pipes and stdin are read, never more than a
limit (docs/limits.md), so `/dev/zero` or an endless pipe cannot exhaust memory. Writes are atomic
(a temporary file in the same folder, then a rename), keep the mode of a file they replace, give a new
file the usual 0666 & ~umask, and write a character device or a pipe (`/dev/null`, a FIFO) in place
instead of replacing it. `check_writable` refuses, before any work, an output that is one of the
command's inputs.

Usage:
    check_writable("out.safetensors", "--output", {"--model": "in.safetensors"})   # before the work
    write_output("model.safetensors", data)   # atomic; "-" writes stdout (binary refused on a terminal)
    data = read_input("mask.safetensors", "mask", limit_name="tensor_file_bytes")   # or "-" for stdin
"""

from __future__ import annotations

import functools
import os
import stat
import struct
import sys
import tempfile
from pathlib import Path

from unlearn_cli.errors import UserError
from unlearn_cli.limits import LIMITS, check_size, limit
from unlearn_cli.signals import deferred

STDIO = "-"
SEED = "{seed}"  # the placeholder `--seeds` fills in (cli/seeds.py)
CHUNK = 1 << 20
_written: set[str] = set()  # the real paths of the files this process has written whole (`written`)
# what a reader's own checks did not foresee in a hostile file: still one line naming the file, never a traceback
UNFORESEEN = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError,
              RuntimeError, MemoryError, struct.error)


def reader(what: str):
    """Decorator for `fn(path, …)` that reads a user's file: an error its checks did not foresee becomes a
    one-line UserError naming the file instead of a traceback."""

    def decorator(read):
        @functools.wraps(read)
        def wrapper(path, *args, **kwargs):
            try:
                return read(path, *args, **kwargs)
            except UserError:
                raise
            except UNFORESEEN as error:
                source = "stdin" if str(path) == STDIO else str(path)
                detail = str(error).splitlines()[0][:160] if str(error) else "no detail"
                raise UserError(f"{source}: cannot read this {what} ({type(error).__name__}: {detail}); "
                                f"check that it is a {what} unlearn wrote") from None

        return wrapper

    return decorator


def _read_stream(stream, source: str, what: str, limit_name: str, start: bytes = b"") -> bytes:
    """At most limit + 1 bytes of an unsized stream (after the bytes `start` already read from it), so an endless one
    is refused, not buffered."""
    bound = limit(limit_name)
    chunks, size = [start], len(start)
    while size <= bound:
        chunk = stream.read(min(CHUNK, bound + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > bound:
        raise UserError(f"{source}: {what} is larger than the limit of {bound:,} {LIMITS[limit_name][1]}; if it is "
                        f"genuine, raise it with UNLEARN_MAX_{limit_name.upper()}")
    return b"".join(chunks)


def read_input(path: str | Path, what: str = "file", limit_name: str = "json_bytes") -> bytes:
    """The bytes of regular file or pipe `path`, or of stdin for `-`, refused above `limit(limit_name)` bytes."""
    if str(path) == STDIO:
        if sys.stdin is None or sys.stdin.closed:  # `<&-`: Python starts without a stdin
            raise UserError(f"{what} '-' means stdin, but stdin is closed; pipe the {what} in or give a path")
        if sys.stdin.isatty():
            raise UserError(f"{what} '-' means stdin, but stdin is a terminal; pipe the {what} in or give a path")
        return _read_stream(sys.stdin.buffer, "stdin", what, limit_name)
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if SEED in str(path):
            raise UserError(f"{path}: {SEED} is not templated here: --seeds fills it in only in the paths its "
                            f"--help names; give the {what}'s own path") from None
        raise UserError(f"{path}: {what} not found; check the path") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror}); check the path and its permissions") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder, expected a {what}")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise UserError(f"{path}: is a device or socket, not a {what}; give the path of a file")
    try:
        with open(path, "rb") as file:
            if stat.S_ISREG(mode):  # read at once into one buffer of its size: chunks joined would hold it twice
                size = os.fstat(file.fileno()).st_size
                check_size(size, limit_name, str(path), f"{what} size in bytes")
                data = file.read(size)
                more = file.read(1)
                if not more:
                    return data
                return _read_stream(file, str(path), what, limit_name, data + more)  # it grew, or a /proc file
            return _read_stream(file, str(path), what, limit_name)
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror}); check its permissions") from None


def _special(mode: int) -> bool:
    """True for what is written in place rather than replaced: a character device (/dev/null) or a pipe."""
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _existing_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UserError(f"{path}: cannot check the output path ({error.strerror}); choose another") from None


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_output(path: str | Path, data: bytes, binary: bool = True) -> None:
    """Write `data` to `path` atomically, or to stdout for `-`.

    A failed or interrupted write leaves no partial file and never touches an existing file at `path`.
    A symbolic link is followed (its target is replaced); a character device or a pipe is written in place.
    """
    if str(path) == STDIO:
        if binary and sys.stdout.isatty():
            raise UserError("refusing to write binary data to a terminal; redirect it (`> file`) or pipe it (`| unlearn …`)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(os.path.realpath(path))
    mode = _existing_mode(target)
    _check_output_kind(Path(path), mode)
    if mode is not None and _special(mode):
        _write_in_place(Path(path), data, binary)
        return
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist; create it first")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise UserError(f"{path}: cannot write in {folder} ({error.strerror}); choose a writable folder") from None
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), stat.S_IMODE(mode) if mode is not None else _new_file_mode())
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with deferred():  # a signal cannot fall between the rename and its record
            os.replace(temporary, target)
            _written.add(str(target))
    except BaseException as error:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise UserError(f"{path}: write failed ({error.strerror}); nothing was written") from None
        raise


def written(path: str | Path) -> bool:
    """Whether this process has written the file at `path` whole: what an interrupted command names as complete."""
    return os.path.realpath(path) in _written


def _write_in_place(path: Path, data: bytes, binary: bool) -> None:
    try:
        with open(path, "wb") as file:
            if binary and file.isatty():
                raise UserError(f"{path}: is a terminal; refusing to write binary data to it")
            file.write(data)
    except OSError as error:
        raise UserError(f"{path}: write failed ({error.strerror})") from None


def _check_output_kind(path: Path, mode: int | None) -> None:
    if mode is None or stat.S_ISREG(mode) or _special(mode):
        return
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder; give a file path for the output")
    raise UserError(f"{path}: is a block device or socket; refusing to write an output there, give a file path")


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)


def check_writable(path: str | Path, flag: str = "--output", inputs: dict[str, object] | None = None,
                   binary: bool = True) -> None:
    """Fail before long work when the output could not be written at the end, or would replace an input.

    `inputs` maps each input flag to its path (or a list of paths, or None); an output that resolves
    to any of them, through links too, is refused naming both flags. Text (`binary=False`) may go to a
    terminal; binary data may not.
    """
    if str(path) == STDIO:
        if binary and sys.stdout.isatty():
            raise UserError("refusing to write binary data to a terminal; redirect it (`> file`) or pipe it (`| unlearn …`)")
        return
    for input_flag, given in (inputs or {}).items():
        for candidate in given if isinstance(given, (list, tuple)) else [given]:
            if candidate is not None and str(candidate) != STDIO and _same_file(str(path), str(candidate)):
                raise UserError(f"{flag} {path} is the same file as {input_flag} {candidate}; writing it would destroy "
                                f"the input: give {flag} another path")
    target = Path(os.path.realpath(path))
    mode = _existing_mode(target)
    _check_output_kind(Path(path), mode)
    if mode is not None and _special(mode):
        return
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{path}: folder {folder} is not writable; choose another output path")
