"""`unlearn evaluate`: accuracies, MIA scores and gaps to the oracle for one or more checkpoints.

Usage:
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors --json results.json
    unlearn evaluate original.safetensors a.safetensors b.safetensors --forget forget.json --parent original.safetensors
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors \
        --oracle-results original.json --json results.json    # the oracle's metrics from an earlier run
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors --relearn \
        --relearn-part 0.2 --relearn-lr 0.01 --relearn-lr 0.1    # how fast each regains the forget set
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearn_cli.cli.common import (ConfigOption, ProgressLines, QuietOption, handle_errors, is_terminal, print_json,
                                    stderr)
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import resolve_config
from unlearn_cli.evaluate.keys import metric_keys, metric_label
from unlearn_cli.evaluate.results import results_document
from unlearn_cli.runs.options import EvaluateConfig, check_evaluate_config
from unlearn_cli.streams import check_writable


@contextlib.contextmanager
def _progress(total: int, quiet: bool):
    """Yields `advance(name)`: one step per evaluated checkpoint on a rich progress bar; in a log or a pipe, a line
    when the work starts and one as each checkpoint is done."""
    if quiet:
        yield lambda name: None
        return
    if not is_terminal(stderr.file):
        lines = ProgressLines("evaluate", total)
        lines.start(f"{total} checkpoint{'s' if total != 1 else ''} to measure; each: predicting the train and test "
                    f"sets, fitting the MIA attacks")
        done = iter(range(1, total + 1))
        yield lambda name: lines.update(next(done, total), status=f"{name} done", force=True)
        lines.finish()
        return
    columns = [TextColumn("[bold]evaluate"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[name]}"), TimeElapsedColumn()]
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("evaluate", total=total, name="")
        yield lambda name: progress.update(task, advance=1, name=name)


def _relearn_rows(records: list[dict]) -> list[list[str]]:
    """Per learning rate: the accuracy on the rest of the forget set after the last relearning step (the oracle's
    beside, as every record carries it) and the relearn gap (docs/relearn.md)."""
    rows = []
    for position, first in enumerate(records[0]["relearn"]["curves"]):
        curves = [record["relearn"]["curves"][position] for record in records]
        rate, oracle = first["lr"], first["oracle_accuracy"]
        rows.append([f"F∖A acc, {len(oracle) - 1} steps at lr {rate:g}", f"{oracle[-1]:.2f}",
                     *[f"{curve['accuracy'][-1]:.2f}" for curve in curves]])
        rows.append([f"relearn gap, lr {rate:g}", "", *[f"{curve['gap']:+.2f}" for curve in curves]])
    return rows


def _render(records: list[dict], oracle_metrics: dict | None) -> Table:
    table = Table(title="unlearn evaluate (metrics in %; Δ = |model − oracle|)")
    table.add_column("metric")
    if oracle_metrics is not None:
        table.add_column("oracle", justify="right")
    for record in records:
        label = record["method"] + (f" {record['strategy']}" if record["strategy"] else "") + (
            f" b={record['budget']:g}" if record["budget"] is not None else "")
        table.add_column(f"{Path(record['model']['source']).name}\n{label}", justify="right")

    def cell(value, gap=None, digits=2):
        if value is None:
            return "—"
        return f"{value:.{digits}f}" + (f" (Δ{gap:.2f})" if gap is not None else "")

    for key in metric_keys(corrective=True):
        if all(key not in r["metrics"] for r in records):
            continue
        row = [metric_label(key)] + ([cell(oracle_metrics.get(key))] if oracle_metrics is not None else [])
        row += [cell(r["metrics"].get(key), (r["gaps"] or {}).get(key)) for r in records]
        table.add_row(*row)
    summary_rows = [("average gap", "average_gap", 1.0, 2), ("strong average gap", "strong_average_gap", 1.0, 2),
                    ("parameters changed %", "fraction_changed", 100.0, 2), ("wall time s", "wall_time_s", 1.0, 1)]
    table.add_section()
    for label, key, scale, digits in summary_rows:
        if all(r[key] is None for r in records):
            continue
        row = [label] + ([""] if oracle_metrics is not None else [])
        row += [cell(None if r[key] is None else r[key] * scale, digits=digits) for r in records]
        table.add_row(*row)
    if any(r["cost"] is not None for r in records):  # machine-independent, beside the wall time (docs/cost.md)
        table.add_row("cost ×retrain", *([""] if oracle_metrics is not None else []),
                      *[cell((r["cost"] or {}).get("x_retrain"), digits=3) for r in records])
    if "relearn" in records[0]:  # --relearn needs an oracle, so its column is there
        table.add_section()
        for row in _relearn_rows(records):
            table.add_row(*row)
    return table


@handle_errors
@with_options(EvaluateConfig)
def evaluate(
    given: dict,
    models: Annotated[list[str], typer.Argument(help="Checkpoints to evaluate (.safetensors).")],
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write results (unlearn-results/1) to FILE or '-'.")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Forget / retain / test accuracy and five MIA scores per model; with --oracle the gaps to it; with --relearn
    how fast each model regains the forget set against the oracle."""
    from unlearn_cli.engine import use_threads  # here: --help needs no torch
    from unlearn_cli.runs.evaluate import prepare_evaluation, score_checkpoints

    cfg = resolve_config(EvaluateConfig, config, given, section="evaluate")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    check_evaluate_config(cfg)
    if json_output not in (None, "-"):
        check_writable(json_output, "--json", {"MODEL": models, "--forget": cfg.forget, "--oracle": cfg.oracle,
                                                "--parent": cfg.parent, "--oracle-results": cfg.oracle_results,
                                                "--config": config})
    plan = prepare_evaluation(models, cfg)
    with _progress(plan.steps, quiet) as advance:
        evaluation = score_checkpoints(plan, advance)
    if not quiet:
        stderr.print(_render(evaluation.records, evaluation.oracle_metrics))
        if evaluation.mismatch_allowed:
            stderr.print("[yellow]warning: --allow-mismatch let a mismatch through (an oracle trained without another "
                         "forget set, or a forget set for another dataset); it is recorded in the results[/yellow]")
    if json_output is not None:
        print_json(results_document(evaluation.records), json_output)
