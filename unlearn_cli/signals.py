"""SIGINT and SIGTERM become an `Interrupted` exception, so cleanup runs and no partial file is left.

A command that writes several files one after another (`--seeds`, `audit`'s outputs, `demo`'s steps) says which
are complete when it is interrupted; the exception ends the command (exit 130 or 143) wherever it is raised.
A file counts as complete once `write_output` has renamed it into place, which it does under `deferred()`
together with the record that `streams.written` reads, so no signal falls between the two.

Usage:
    with reporting(lambda: f"{', '.join(done)} are written and complete" if (done := [p for p in outputs
                                                                                      if written(p)]) else None):
        for path in outputs:
            write_output(path, data)
"""

from __future__ import annotations

import contextlib
import signal
from typing import Callable

_pending: list[int] | None = None  # inside `deferred()`: the signals that arrived, raised on leaving it


class Interrupted(BaseException):
    """Raised by the signal handler; caught at the command's edge and reported in one line."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number
        self.written: str | None = None  # what a command that writes several files had finished (`--seeds`)

    def message(self) -> str:
        """The one line reported: `interrupted by SIGINT; no output was written and existing files are untouched`."""
        return (f"interrupted by {signal.Signals(self.signal_number).name}; "
                + (self.written or "no output was written and existing files are untouched"))


@contextlib.contextmanager
def reporting(complete: Callable[[], str | None]):
    """An interruption inside reports `complete()` (what is written and complete, or None: nothing yet) instead
    of "no output was written"."""
    try:
        yield
    except Interrupted as interruption:
        interruption.written = interruption.written or complete()
        raise


@contextlib.contextmanager
def deferred():
    """A few steps that must not be split by an interruption (a rename and its record): a signal that arrives
    inside is raised as `Interrupted` when the block ends."""
    global _pending
    outer, _pending = _pending, []
    try:
        yield
    finally:
        arrived, _pending = _pending, outer
        if arrived:
            if outer is not None:
                outer.extend(arrived)  # a block inside another: the outer one raises
            else:
                raise Interrupted(arrived[0])


def _raise_interrupted(signal_number, frame):
    if _pending is not None:
        _pending.append(signal_number)
        return
    raise Interrupted(signal_number)


def install_handlers() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _raise_interrupted)
