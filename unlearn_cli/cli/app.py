"""The `unlearn` command: one sub-command per module in this folder.

A command's module is imported only when that command runs or shows its --help, so `unlearn --help` and the
commands that train nothing start without torch; `COMMANDS` holds what `unlearn --help` lists.

Usage:
    unlearn --help
    unlearn [--debug] COMMAND [OPTIONS]
"""

from __future__ import annotations

import functools
import importlib
import inspect

from typer import _click as click  # typer carries its own click
import typer
from typer.core import TyperCommand, TyperGroup

import unlearn_cli
from unlearn_cli.cli import common

common.whole_help_when_piped()  # `--help | cat`, `--help > file`: whole option names, not 80 cut columns

# name -> (module in cli/, its command function or typer app, whether only torchrun's rank 0 runs it, the line
# `unlearn --help` shows: the first paragraph of the command's help, which test_config_consistency checks)
COMMANDS: dict[str, tuple[str, str, bool, str]] = {
    "split": ("split", "split", False, "Draw a forget set (seeded, reproducible) and write it as JSON."),
    "train": ("train", "train", False, "Train a classifier with SGD (momentum 0.9, cosine schedule) and write a "
                                       "self-describing checkpoint."),
    "localize": ("localize", "localize", True, "Score parameters on the forget set and write the selected ones as a "
                                               "mask."),
    "apply": ("apply", "apply", False, "Unlearn the forget set from a checkpoint with one method, changing only the "
                                       "masked parameters."),
    "calibrate": ("calibrate", "calibrate", False, "Fit retraining's confidence scale to an unlearned checkpoint and "
                                                   "fold it into its classifier head."),
    "evaluate": ("evaluate", "evaluate", True, "Forget / retain / test accuracy and five MIA scores per model; with "
                                               "--oracle the gaps to it; with --relearn how fast each model regains "
                                               "the forget set against the oracle."),
    "audit": ("audit", "audit", True, "Per-example forgetting audit of a pool of unlearned models against a pool of "
                                      "retrained ones."),
    "report": ("report", "report", False, "Aggregate evaluation results over seeds: mean ± 95% confidence margin "
                                          "(Student t) per group, with ToW."),
    "tune": ("tune", "tune", True, "Search a pipeline's settings and write the best as a YAML for `localize --config` "
                                   "and `apply --config`."),
    "info": ("info", "info", False, "Validate a checkpoint file and print its metadata and parameter count (--load: "
                                   "also load it strictly)."),
    "demo": ("demo", "demo", False, "Run the whole pipeline on the bundled digits data and print the comparison with "
                                    "the oracle."),
    "mask": ("mask", "app", False, "Inspect masks, compare them, draw structure-matched random controls."),
}


def _on_rank_zero(command):
    """`distributed.rank_zero_only`, imported when the command runs (it needs torch), not when its --help is built."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from unlearn_cli.distributed import rank_zero_only

        return rank_zero_only(command)(*args, **kwargs)

    return run


@functools.lru_cache(maxsize=None)
def load_command(name: str) -> click.Command:
    """The click command `name`, built from its module (imported now)."""
    module_name, attribute, rank_zero, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"unlearn_cli.cli.{module_name}"), attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(_on_rank_zero(target) if rank_zero else target)
        command = typer.main.get_command(single)
    command.name = name
    for each in [command, *getattr(command, "commands", {}).values()]:
        each.help = _flowing(each.help)
    return command


def _flowing(text: str | None) -> str | None:
    """A command's help with each paragraph's line breaks made spaces: typer keeps them after the first paragraph,
    which breaks the lines of a docstring's later paragraphs where the source did, not where the terminal does."""
    if text is None:
        return None
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text).split("\n\n"))


class LazyCommands(TyperGroup):
    """The commands of `COMMANDS`: listed from the table, each built when it is run or asked for its --help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listed = {name: TyperCommand(name, help=line) for name, (*_, line) in COMMANDS.items()}

    @property
    def commands(self) -> dict[str, click.Command]:  # every command built, for tests and tools that walk the tree
        return {name: load_command(name) for name in COMMANDS} if hasattr(self, "listed") else {}

    @commands.setter
    def commands(self, _given) -> None:
        pass

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """What `unlearn --help` lists: the name and its line, nothing imported."""
        return self.listed.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        return name, (None if command is None else load_command(command.name)), rest


app = typer.Typer(
    name="unlearn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=LazyCommands,
    help="Localized machine unlearning for image classifiers: train, localize, apply, evaluate.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"unlearn {unlearn_cli.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    common.State.debug = debug
