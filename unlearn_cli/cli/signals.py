"""SIGINT and SIGTERM become an `Interrupted` exception, so cleanup runs and no partial file is left."""

import signal


class Interrupted(BaseException):
    """Raised by the signal handler; caught at the command's edge and reported in one line."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def _raise_interrupted(signal_number, frame):
    raise Interrupted(signal_number)


def install_handlers() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _raise_interrupted)
