"""`unlearn demo`: the whole pipeline on scikit-learn's bundled digits, each step a real `unlearn` command.

Usage:
    unlearn demo                 # files land in ./demo-run
    unlearn demo --folder /tmp/d
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import typer

from unlearn_cli.cli.common import handle_errors, stderr
from unlearn_cli.errors import UserError


def demo_steps(folder: Path) -> list[list[str]]:
    """The pipeline as `unlearn` argument lists; every file lives in `folder`."""
    f = lambda name: str(folder / name)  # noqa: E731
    model = ["--arch", "mlp", "--arch-option", "width=256", "--epochs", "40", "--lr", "0.1", "--batch-size", "64"]
    return [
        ["split", "--dataset", "digits", "--kind", "noniid", "--classes", "2,5", "--fraction", "0.1", "--seed", "0",
         "-o", f("forget.json")],
        ["train", "--dataset", "digits", *model, "--seed", "0", "-o", f("original.safetensors")],
        ["train", "--dataset", "digits", *model, "--seed", "0", "--exclude", f("forget.json"), "-o", f("oracle.safetensors")],
    ]


@handle_errors
def demo(
    folder: Annotated[Path, typer.Option("--folder", help="Where the demo's files are written.")] = Path("demo-run"),
):
    """Run the whole pipeline on the bundled digits data and print what each step measured."""
    from unlearn_cli.cli.app import app

    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise UserError(f"{folder}: cannot create the demo folder")
    started = time.perf_counter()
    for arguments in demo_steps(folder):
        stderr.print(f"\n[bold]$ unlearn {shlex.join(arguments)}[/bold]")
        try:
            app(arguments, standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise UserError(f"demo step `unlearn {arguments[0]}` failed (exit {exit_.code})") from None
    stderr.print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; files in {folder}/")
