"""SIGINT and SIGTERM become an `Interrupted` exception, so cleanup runs and no partial file is left."""

from __future__ import annotations

import signal


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


def _raise_interrupted(signal_number, frame):
    raise Interrupted(signal_number)


def install_handlers() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _raise_interrupted)
