"""`unlearn tune`: choose a pipeline's settings from a grid, without an oracle by default, and write the choice as
a config YAML that `localize --config` and `apply --config` read.

Without --oracle each candidate is scored against held-out test examples with the forget set's class mix
(tune/objectives.py: the forget set should look as unseen as they do, without losing validation accuracy or
damaging the model, and the model should fit its retain set and be as confident on unseen examples as the
original), on --validation-sets K forget sets (--forget and K−1 more drawn by its split; 3 by default) whose mean
objective chooses. With --oracle it is scored by the average gap to the oracle, as the DEL paper tunes, on the one
forget set the oracle was trained without; then --forget should be a validation forget set, not one whose results
are reported. `--grid calibrate=false,true` (or --calibrate) ends a candidate's runs with the calibration step.

Usage:
    unlearn tune --model original.safetensors --forget forget.json --strategy del --method rft \
        --grid lr=0.01,0.03,0.1 --grid epochs=5,10 --grid budget=0.1,0.3 -o best.yaml
    unlearn localize --model original.safetensors --forget forget.json --config best.yaml -o mask.safetensors
    unlearn apply --model original.safetensors --forget forget.json --mask mask.safetensors --config best.yaml -o del.safetensors
    unlearn tune --model original.safetensors --forget forget.json --method finetune --grid lr=0.01,0.1 \
        --grid calibrate=false,true --validation-sets 5 -o best.yaml
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, progress_bar, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import resolve_config
from unlearn_cli.errors import UserError, name_as
from unlearn_cli.runs.options import TuneConfig
from unlearn_cli.streams import check_writable, write_output

if TYPE_CHECKING:  # the search's modules are imported where it runs: `tune --help` needs no torch
    from unlearn_cli.tune import Trial


def _render(ranked: list[Trial], grid_keys: list[str], chosen: Trial | None) -> Table:
    parts = [key for key in (ranked[0].score if ranked and ranked[0].score else {}) if key != "objective"]
    for trial in ranked:
        parts += [key for key in trial.score if key != "objective" and key not in parts]
    table = Table(title="unlearn tune: every candidate, best first (objective and parts in points; lower is better)")
    for header in ["rank", *grid_keys, "share run", "cost ×retrain", "objective", *parts, "status"]:
        table.add_column(header, justify="left" if header in ("status", *grid_keys) else "right")
    for rank, trial in enumerate(ranked, 1):
        status = ("chosen" if trial is chosen else "failed: " + trial.failure if trial.failure
                  else "stopped early" if trial.fraction < 1 else "")
        numbers = [f"{trial.score[key]:.2f}" if key in trial.score and math.isfinite(trial.score[key]) else "—"
                   for key in parts]
        objective = "—" if not math.isfinite(trial.objective) else f"{trial.objective:.2f}"
        cost = "—" if trial.cost is None else f"{trial.cost:.3f}"
        table.add_row(str(rank), *[str(trial.candidate.settings[key]) for key in grid_keys],
                      "all" if trial.fraction == 1 else f"{trial.fraction:g}", cost, objective, *numbers, status)
    return table


@handle_errors
@with_options(TuneConfig)
def tune(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="YAML to write: localize:/apply: sections for --config ('-' for stdout).")],
    grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", help="option=v1,v2,… to search: a method option (lr, epochs, …), a localization option (budget, topk, …) or calibrate (false,true).")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Search a pipeline's settings and write the best as a YAML for `localize --config` and `apply --config`.

    Without --oracle every candidate runs on --validation-sets forget sets (--forget and more drawn by the split it
    records) and the mean of its oracle-free objectives chooses; the last line says how many sets alone would have
    chosen the same. With --oracle, on --forget only. --grid calibrate=false,true searches the calibration step.
    """
    from unlearn_cli.engine import use_threads
    from unlearn_cli.methods import method_options
    from unlearn_cli.runs.tune import objective_weights, plan_search, run_search
    from unlearn_cli.tune import parse_grid

    cfg = resolve_config(TuneConfig, config, given, section="tune")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    for flag, key in (("--model", "model"), ("--forget", "forget")):
        if getattr(cfg, key) is None:
            raise UserError(f"{flag} is required: pass {flag}, or set `{key}:` in the tune section of a --config YAML")
    weights = objective_weights(cfg)
    search_space = parse_grid(grid)
    name_as("param", method_options(cfg.method or "rft"))  # tune has no flag of a method's own: --param or --grid
    name_as("grid", search_space)
    plan = plan_search(cfg, weights, search_space)
    check_writable(output, "--output", {"--model": cfg.model, "--forget": cfg.forget, "--oracle": cfg.oracle,
                                        "--config": config}, binary=False)
    result = run_search(plan, lambda description, total: progress_bar(description, total, quiet),
                        note=None if quiet else stderr.print)
    if not quiet:
        stderr.print(_render(result.ranked, list(search_space), result.chosen))
    write_output(output, result.yaml(), binary=False)
    if not quiet:
        stderr.print(f"chose {result.summary()} -> {output}")
