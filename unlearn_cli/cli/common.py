"""What every command shares: error handling, progress bars, shared options, data from a checkpoint.

Usage:
    @app.command()
    @handle_errors
    def train(...): ...
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unlearn_cli.data import ImageData, create_dataset
from unlearn_cli.cli.signals import Interrupted
from unlearn_cli.errors import UserError

stderr = Console(stderr=True, soft_wrap=True, highlight=False)


class State:
    debug = False


def handle_errors(command):
    """Turn UserError into one line on stderr and exit 1; SIGINT/SIGTERM into a clean exit (130/143)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            if State.debug:
                raise
            sys.stderr.write(f"error: {error}\n")
            raise typer.Exit(1) from None
        except Interrupted as interruption:
            name = signal.Signals(interruption.signal_number).name
            sys.stderr.write(f"interrupted by {name}; no output was written and existing files are untouched\n")
            raise typer.Exit(128 + interruption.signal_number) from None

    return wrapper


ConfigOption = Annotated[Optional[str], typer.Option("--config", help="YAML file of options; flags override it.")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps (default: auto)")]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: 0).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables on stderr.")]
DataRootOption = Annotated[Optional[str], typer.Option("--data-root", help="Folder holding the dataset files.")]
AmpOption = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast of forward passes (default: on for cuda, off otherwise).")]
ChannelsLastOption = Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="Channels-last memory layout for convolutions (default: on for cuda, off otherwise).")]
CompileOption = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model for training (default: off).")]


@contextlib.contextmanager
def progress_bar(description: str, total: int, quiet: bool):
    """A rich progress bar on stderr; yields the `on_step` callback that the training loop calls."""
    if quiet:
        yield None
        return
    if not stderr.is_terminal:  # a log file sees when the work starts; the bar itself is drawn at the end
        stderr.print(f"{description}: {total} steps" if total else f"{description}: started")
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")
        state = {"started": None}

        def on_step(info: dict) -> None:
            import time

            now = time.perf_counter()
            if state["started"] is None:
                state["started"] = (now, info["images"])
            start, first_images = state["started"]
            rate = (info["images"] - first_images) / max(now - start, 1e-9)
            status = f"epoch {info['epoch'] + 1} loss {info['loss']:.3f} acc {100 * info['accuracy']:.1f}% {rate:,.0f} img/s"
            progress.update(task, completed=info["step"], total=info["total_steps"], status=status)

        yield on_step


def dataset_for(checkpoint, data_root: str | None) -> ImageData:
    """Rebuild the dataset a checkpoint was trained on (its name and options are in the metadata)."""
    kwargs = checkpoint.dataset_kwargs
    root = data_root or checkpoint.meta.get("data_root") or None
    if root:
        kwargs["data_root"] = root
    return create_dataset(checkpoint.meta["dataset"], **kwargs)


def print_json(document: dict, path: str) -> None:
    from unlearn_cli.io.streams import write_output

    write_output(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(), binary=False)
