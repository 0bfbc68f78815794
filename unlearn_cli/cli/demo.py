"""`unlearn demo`: the whole pipeline on scikit-learn's bundled digits, each step a real `unlearn` command.

It trains an original model and the oracle (retrained without the forget set), runs DEL (DEL mask +
Reset-and-Finetune), SalUn (SalUn mask + random labels) and plain finetuning, and scores all of them
against the oracle. Every file stays in the folder, and every step is printed as the command that ran it.

Usage:
    unlearn demo                 # files land in ./demo-run
    unlearn demo --folder /tmp/d
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import handle_errors, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import resolve_config, threads_option
from unlearn_cli.errors import UserError
from unlearn_cli.signals import reporting
from unlearn_cli.streams import written

COMPUTING = ("train", "localize", "apply", "evaluate")  # the steps that take --threads


@dataclass
class DemoConfig:
    threads: Optional[int] = threads_option()  # passed on to every step that computes


def demo_steps(folder: Path) -> list[list[str]]:
    """The pipeline as `unlearn` argument lists; every file lives in `folder`."""
    f = lambda name: str(folder / name)  # noqa: E731
    model = ["--dataset", "digits", "--arch", "mlp", "--arch-option", "width=256", "--epochs", "40",
             "--batch-size", "64", "--seed", "0", "--quiet"]
    unlearn = ["--model", f("original.safetensors"), "--forget", f("forget.json"), "--batch-size", "32", "--quiet"]
    return [
        ["split", "--dataset", "digits", "--kind", "noniid", "--classes", "2,5", "--fraction", "0.1", "--seed", "0",
         "-o", f("forget.json")],
        ["train", *model, "-o", f("original.safetensors")],
        ["train", *model, "--exclude", f("forget.json"), "-o", f("oracle.safetensors")],
        ["localize", "--model", f("original.safetensors"), "--forget", f("forget.json"), "--strategy", "del",
         "--budget", "0.3", "-o", f("del.mask.safetensors")],
        ["apply", *unlearn, "--method", "rft", "--mask", f("del.mask.safetensors"), "--lr", "0.05", "--epochs", "10",
         "-o", f("del.safetensors")],
        ["localize", "--model", f("original.safetensors"), "--forget", f("forget.json"), "--strategy", "salun",
         "--budget", "0.3", "-o", f("salun.mask.safetensors")],
        ["apply", *unlearn, "--method", "random-label", "--mask", f("salun.mask.safetensors"), "--lr", "0.01",
         "--epochs", "5", "-o", f("salun.safetensors")],
        ["apply", *unlearn, "--method", "finetune", "--lr", "0.01", "--epochs", "10", "-o", f("finetune.safetensors")],
        ["evaluate", f("original.safetensors"), f("del.safetensors"), f("salun.safetensors"), f("finetune.safetensors"),
         "--forget", f("forget.json"), "--oracle", f("oracle.safetensors"), "--parent", f("original.safetensors"),
         "--json", f("results.json")],
    ]


@handle_errors
@with_options(DemoConfig)
def demo(
    given: dict,
    folder: Annotated[Path, typer.Option("--folder", help="Where the demo's files are written.")] = Path("demo-run"),
):
    """Run the whole pipeline on the bundled digits data and print the comparison with the oracle.

    Interrupted (Ctrl-C, SIGTERM), it stops at once: the files of the steps done stay, no later step runs.
    """
    from unlearn_cli.cli.app import app
    from unlearn_cli.engine import use_threads  # here: --help needs no torch

    cfg = resolve_config(DemoConfig, None, given)

    use_threads(cfg.threads)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{folder}: cannot create the demo folder ({error.strerror}); choose another --folder") from None
    started = time.perf_counter()
    steps = demo_steps(folder)
    done = lambda: [arguments[0] for arguments in steps if written(arguments[-1])]  # noqa: E731 (the output is last)
    with reporting(lambda: f"{len(done())} of the demo's {len(steps)} steps are complete ({', '.join(done())}; their "
                           f"files are in {folder}/), the later ones did not run" if done() else None):
        for arguments in steps:
            if cfg.threads is not None and arguments[0] in COMPUTING:
                arguments = [*arguments, "--threads", str(cfg.threads)]
            stderr.print(f"[bold]$ unlearn {shlex.join(arguments)}[/bold]")
            code = app(arguments, standalone_mode=False)  # a step's exit status (None: it finished)
            if code:
                raise UserError(f"demo step `unlearn {arguments[0]}` failed (exit {code})")
    stderr.print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; every file is in {folder}/. "
                 f"DEL = the `del` mask + `rft`; SalUn = the `salun` mask + `random-label`. Lower gaps are better.")
    stderr.print("To rerun a step by hand, copy its `$ unlearn …` line above; to aggregate runs: "
                 f"unlearn report {shlex.quote(str(folder / 'results.json'))}")
