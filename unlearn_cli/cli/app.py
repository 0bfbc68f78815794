"""The `unlearn` command: one sub-command per module in this folder.

Usage:
    unlearn --help
    unlearn [--debug] COMMAND [OPTIONS]
"""

from __future__ import annotations

import typer

import unlearn_cli
from unlearn_cli.cli import common, demo, info, split, train
from unlearn_cli.cli import localize, mask
from unlearn_cli.cli import apply, calibrate
from unlearn_cli.cli import audit, evaluate, report, tune
from unlearn_cli.distributed import rank_zero_only

common.whole_help_when_piped()  # `--help | cat`, `--help > file`: whole option names, not 80 cut columns

app = typer.Typer(
    name="unlearn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
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


app.command("split")(split.split)
app.command("train")(train.train)
app.command("localize")(rank_zero_only(localize.localize))
app.command("apply")(apply.apply)
app.command("calibrate")(calibrate.calibrate)
app.add_typer(mask.app, name="mask")
app.command("evaluate")(rank_zero_only(evaluate.evaluate))
app.command("audit")(rank_zero_only(audit.audit))
app.command("report")(report.report)
app.command("tune")(rank_zero_only(tune.tune))
app.command("info")(info.info)
app.command("demo")(demo.demo)
