"""The command line: one module per command; parsing, file I/O and rendering live here only."""

import sys


def main() -> None:
    """Console entry point: SIGINT/SIGTERM handlers go in first, so even an early signal exits cleanly."""
    from unlearn_cli.signals import Interrupted, install_handlers

    install_handlers()
    try:
        from unlearn_cli.cli.app import app

        app()
    except Interrupted as interruption:
        sys.stderr.write(interruption.message() + "\n")
        sys.exit(128 + interruption.signal_number)
