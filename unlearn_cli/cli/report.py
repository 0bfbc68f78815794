"""`unlearn report`: pool results files, mean ± 95% margin over seeds, as a table, Markdown, CSV or a plot.

Runs are grouped by (forget set, strategy, method, budget); each oracle used appears as a row of its own.
A checkpoint evaluated more than once on the same forget set counts once: the most complete record is kept,
and records whose numbers disagree are refused (`merge_evaluations`). The ToW column is the Tug-of-War
score of Zhao et al. 2024 (see aggregate.py).

With --baseline PIPELINE (`[STRATEGY +] METHOD [@ BUDGET]`, as the pipelines are labelled) a second table
compares every other pipeline with it run by run: mean ± 95% margin of the differences (pipeline − baseline)
of the average gap, the strong average gap and ToW over runs with the same forget set and seed.

Usage:
    unlearn report results/*.json
    unlearn report results/*.json --format markdown -o table.md --plot curves.png
    unlearn report results/*.json --baseline "del + rft @ 0.3"
    unlearn report results/*.json --config report.yaml     # format: markdown, baseline: del+rft@0.3
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, pyplot, stderr
from unlearn_cli.config import resolve_config
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import (
    PAIRED_KEYS,
    UNDECIDED,
    Group,
    GroupKey,
    PairedRow,
    Pipeline,
    Summary,
    find_pipeline,
    group_runs,
    merge_evaluations,
    oracle_summaries,
    paired_comparisons,
    pipelines,
)
from unlearn_cli.evaluate.metrics import metric_keys, metric_label
from unlearn_cli.evaluate.results import read_report_input
from unlearn_cli.io.streams import check_writable, write_output

EXTRA_COLUMNS = {"average_gap": ("avg gap", 1.0), "strong_average_gap": ("strong avg gap", 1.0),
                 "fraction_changed": ("changed %", 100.0), "wall_time_s": ("wall s", 1.0),
                 "tow": ("ToW", 1.0), "cost": ("cost ×oracle", 1.0)}  # appended: earlier CSV columns keep their places
TABLE_COLUMNS = (("forget_accuracy", "forget", 1.0), ("retain_accuracy", "retain", 1.0), ("test_accuracy", "test", 1.0),
                 ("mia_correctness", "MIA-corr", 1.0), ("mia_confidence", "MIA-conf", 1.0), ("average_gap", "avg gap", 1.0),
                 ("strong_average_gap", "strong gap", 1.0), ("fraction_changed", "changed %", 100.0), ("tow", "ToW", 1.0),
                 ("cost", "cost ×oracle", 1.0))
# a manipulated forget set's metrics, shown (last, so that the other columns keep their places) when a run has them
CORRECTIVE_COLUMNS = (("repaired_accuracy", "repaired", 1.0), ("remembered_accuracy", "remembered", 1.0),
                      ("attack_success_rate", "attack success", 1.0))
EXTRA_DIGITS = {"tow": 3, "cost": 3}  # ToW lies in [0, 1]: more decimals than the other columns (1 in the table, 2 in Markdown)
PAIRED_HEADERS = {"average_gap": "avg gap", "strong_average_gap": "strong gap", "tow": "ToW"}
PAIRED_DIGITS = {"average_gap": 2, "strong_average_gap": 2, "tow": 4}
PAIRED_NOTE = ("difference = pipeline − baseline over runs with the same forget set and seed; "
               "gaps: lower is better, ToW: higher is better")
PLOT_PANELS = (("forget_accuracy", "forget accuracy (%)"), ("mia_correctness", "MIA-correctness (%)"),
               ("test_accuracy", "test accuracy (%)"))  # the paper's Figures 2–3


class ReportFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"


@dataclass
class ReportConfig:
    format: str = "table"  # table | markdown | csv (the files, -o and --plot are given on the command line)
    baseline: Optional[str] = None  # pipeline `[STRATEGY +] METHOD [@ BUDGET]` the others are paired against


def resolve_report_config(config_path: str | None, output_format: ReportFormat | None,
                          baseline: str | None = None) -> ReportConfig:
    cfg = resolve_config(ReportConfig, config_path, {"format": None if output_format is None else output_format.value,
                                                     "baseline": baseline})
    choices = [choice.value for choice in ReportFormat]
    if cfg.format not in choices:  # a flag is checked by typer; only the YAML can get here
        raise UserError(f"{config_path}: option 'format': {cfg.format!r} is not one of {', '.join(choices)}")
    return cfg


def _rows(groups: list[Group], oracles: dict[str, dict[str, Summary]]) -> list[tuple[GroupKey, int, dict[str, Summary]]]:
    """(key, runs, summaries) per table row: the groups, then one oracle row per forget set."""
    rows = [(group.key, group.count, group.stats) for group in groups]
    kinds = {group.key.forget_sha256: group.key.forget_kind for group in groups}
    for forget_sha, summaries in oracles.items():
        count = max(summary.n for summary in summaries.values())
        rows.append((GroupKey(kinds[forget_sha], forget_sha, "—", "oracle", None), count, summaries))
    return sorted(rows, key=lambda row: (row[0].forget_kind, row[0].forget_sha256))  # stable: oracle last per set


def _corrective_columns(rows) -> list[tuple[str, str, float]]:
    """The corrective metrics' columns that some row has a number for."""
    return [column for column in CORRECTIVE_COLUMNS
            if any(summaries.get(column[0]) is not None and summaries[column[0]].n for _, _, summaries in rows)]


def _columns(rows=(), only: tuple[str, ...] | None = None) -> list[tuple[str, str, float]]:
    """(key, header, scale) of every aggregated number (or of those in `only`), the corrective ones when `rows`
    have them."""
    columns = [(key, metric_label(key), 1.0) for key in metric_keys()] + [
        (key, header, scale) for key, (header, scale) in EXTRA_COLUMNS.items()] + _corrective_columns(rows)
    return [column for column in columns if only is None or column[0] in only]


def _text(summary: Summary | None, scale: float, digits: int = 2, separator: str = " ± ", sign: str = "") -> str:
    if summary is None or summary.n == 0:
        return "—"
    margin = "—" if summary.n == 1 else f"{summary.margin * scale:.{digits}f}"
    return f"{summary.mean * scale:{sign}.{digits}f}{separator}{margin}"


def _identity(key: GroupKey, count: int) -> list[str]:
    budget = "—" if key.budget is None else f"{key.budget:g}"
    return [f"{key.forget_kind}:{key.forget_sha256[:8]}", key.strategy, key.method, budget, str(count)]


IDENTITY_HEADERS = ["forget set", "strategy", "method", "budget", "n"]


def render_table(rows) -> Table:
    """The terminal table: the paper's headline numbers, compact (Markdown and CSV carry every metric)."""
    forget_sets = sorted({f"{key.forget_kind}:{key.forget_sha256[:8]}" for key, _, _ in rows})
    title = "unlearn report: mean ± 95% margin over seeds (metrics in %)"
    table = Table(title=title + (f"\nforget set {forget_sets[0]}" if len(forget_sets) == 1 else ""))
    identity_headers = (["forget set"] if len(forget_sets) > 1 else []) + ["run", "budget", "n"]
    for header in identity_headers:
        table.add_column(header)
    columns = list(TABLE_COLUMNS) + _corrective_columns(rows)
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for key, count, summaries in rows:
        forget, strategy, method, budget, n = _identity(key, count)
        run = method if strategy == "—" else f"{strategy} + {method}"
        cells = ([forget] if len(forget_sets) > 1 else []) + [run, budget, n]
        table.add_row(*cells, *[_text(summaries.get(name), scale, digits=EXTRA_DIGITS.get(name, 1), separator="±")
                                for name, _, scale in columns])
    return table


def render_markdown(rows) -> str:
    columns = _columns(rows)
    headers = IDENTITY_HEADERS + [header for _, header, _ in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for key, count, summaries in rows:
        cells = _identity(key, count) + [_text(summaries.get(name), scale, digits=EXTRA_DIGITS.get(name, 2))
                                         for name, _, scale in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _budget(budget: float | None) -> str:
    return "" if budget is None else f"{budget:g}"


def _numbers(summary: Summary | None) -> list[str]:
    return ["", ""] if summary is None or summary.n == 0 else [f"{summary.mean:.10g}", f"{summary.margin:.10g}"]


PAIRED_CSV_COLUMNS = (["comparison", "baseline_strategy", "baseline_method", "baseline_budget",
                       "unpaired_pipeline", "unpaired_baseline"]
                      + [f"{name}_diff_{part}" for name in PAIRED_KEYS for part in ("mean", "margin", "n", "verdict")])


def render_csv(rows, paired: tuple[Pipeline, list[PairedRow]] | None = None) -> str:
    """One row per table row; with `paired`, the comparison's columns are appended (empty on those rows)
    and one `comparison=paired` row per pipeline and forget set follows, `n` holding the pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [name for name, _, _ in _columns(rows)]
    writer.writerow(["forget_kind", "forget_sha256", "strategy", "method", "budget", "n"]
                    + [f"{name}_{part}" for name in names for part in ("mean", "margin")]
                    + (PAIRED_CSV_COLUMNS if paired else []))
    extra = [""] * len(PAIRED_CSV_COLUMNS) if paired else []
    for key, count, summaries in rows:
        numbers = [value for name in names for value in _numbers(summaries.get(name))]
        writer.writerow([key.forget_kind, key.forget_sha256, key.strategy, key.method, _budget(key.budget), count]
                        + numbers + extra)
    if paired:
        baseline, comparisons = paired
        for row in comparisons:
            differences = []
            for name in PAIRED_KEYS:
                summary = row.differences[name]
                verdict = row.verdicts[name]
                differences += _numbers(summary) + [summary.n, "" if verdict == UNDECIDED else verdict]
            writer.writerow([row.forget_kind, row.forget_sha256, row.pipeline.strategy, row.pipeline.method,
                             _budget(row.pipeline.budget), row.pairs] + [""] * (2 * len(names))
                            + ["paired", baseline.strategy, baseline.method, _budget(baseline.budget),
                               row.unpaired_pipeline, row.unpaired_baseline] + differences)
    return buffer.getvalue()


def _paired_cells(row: PairedRow, several_forget_sets: bool) -> list[str]:
    cells = [f"{row.forget_kind}:{row.forget_sha256[:8]}"] if several_forget_sets else []
    cells += [row.pipeline.label, str(row.pairs), str(row.left_out)]
    for name in PAIRED_KEYS:
        summary = row.differences[name]
        text = _text(summary, 1.0, digits=PAIRED_DIGITS[name], sign="+")
        if 0 < summary.n < row.pairs:  # some pairs lack this score (a run without an oracle)
            text += f" (n={summary.n})"
        cells += [text, row.verdicts[name]]
    return cells


def _paired_headers(several_forget_sets: bool) -> list[str]:
    headers = (["forget set"] if several_forget_sets else []) + ["pipeline", "n", "left out"]
    for name in PAIRED_KEYS:
        headers += [f"Δ {PAIRED_HEADERS[name]}", f"{PAIRED_HEADERS[name]}: baseline"]
    return headers


def _several_forget_sets(comparisons: list[PairedRow]) -> bool:
    return len({row.forget_sha256 for row in comparisons}) > 1


def render_paired_table(baseline: Pipeline, comparisons: list[PairedRow]) -> Table:
    """The terminal's second table; rows where an interval excludes 0 are bold."""
    several = _several_forget_sets(comparisons)
    table = Table(title=f"paired against baseline {baseline.label}: mean ± 95% margin of the differences\n{PAIRED_NOTE}")
    for header in _paired_headers(several):
        table.add_column(header, justify="right" if header.startswith("Δ") else "left")
    for row in comparisons:
        decided = any(verdict not in ("level", UNDECIDED) for verdict in row.verdicts.values())
        table.add_row(*_paired_cells(row, several), style="bold" if decided else None)
    if not comparisons:
        table.caption = "no other pipeline to compare"
    return table


def render_paired_markdown(baseline: Pipeline, comparisons: list[PairedRow]) -> str:
    several = True  # like the first Markdown table, always with the forget set
    headers = _paired_headers(several)
    lines = [f"Paired against baseline `{baseline.label}`: mean ± 95% margin; {PAIRED_NOTE}.", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_paired_cells(row, several)) + " |" for row in comparisons]
    return "\n".join(lines) + "\n"


# --- audit files (`unlearn audit --json`) ----------------------------------------------------------------
AUDIT_COLUMNS = (("forget_score", "forget score"), ("final_score", "final score"), ("attack_accuracy", "attack acc"),
                 ("attack_auc", "attack AUC"), ("kl_gaussian.mean", "KL mean"), ("kl_gaussian.p95", "KL p95"),
                 ("kl_binned.mean", "binned KL mean"), ("epsilon.median", "median ε"))
AUDIT_NOTE = ("forget score: mean points of the per-example ε (1 = every example indistinguishable from "
              "retraining); attack: leave-one-out likelihood ratio, 0.5 = chance; KL(retrained ‖ pool) of φ")


def _pool_label(pool: dict) -> str:
    """`del + rft @ 0.3`, `finetune`, or `original`: what produced a pool, as pipelines are labelled."""
    method = pool.get("method") or "mixed methods"
    text = method if not pool.get("strategy") else f"{pool['strategy']} + {method}"
    return text if pool.get("budget") is None else f"{text} @ {pool['budget']:g}"


def audit_lines(documents: list[dict]) -> list[dict]:
    """One line per comparison of the audit files, each comparison once: the originals' and the retrained
    halves' rows of a forget set repeat in every audit made with the same pools."""
    lines, seen = [], set()
    for document in documents:
        forget = document["forget"]
        for row in document["rows"]:
            pool = {"unlearned": "unlearned", "original": "original", "half": "retrained"}.get(row["pool"], row["pool"])
            block = document["pools"].get(pool, {})
            models = tuple(sorted(model["sha256"] for model in block.get("models", [])))
            key = (forget["sha256"], row["name"], row["examples"], models)
            if key in seen:
                continue
            seen.add(key)
            label = _pool_label(block) if row["pool"] == "unlearned" else {
                "original": "original", "ceiling": "independent oracles"}.get(row["pool"], "retrained, one half")
            lines.append({"forget": f"{forget['kind']}:{forget['sha256'][:8]}", "pool": label, "row": row,
                          "comparison": row["name"].replace("unlearned", "pool").replace("original", "pool")})
    order = {"forget": 0, "retain": 1, "test": 2}
    kind = {"unlearned": 0, "original": 1, "ceiling": 2, "half": 2}
    return sorted(lines, key=lambda line: (line["forget"], order.get(line["row"]["examples"], 3),
                                           kind.get(line["row"]["pool"], 3), line["pool"]))


def _audit_numbers(row: dict) -> list:
    """The AUDIT_COLUMNS of a row (every one is there: `validate_audit` checked), None where not finite."""
    values = []
    for dotted, _ in AUDIT_COLUMNS:
        value = row
        for part in dotted.split("."):
            value = value[part]
        values.append(value)
    return values


def _audit_cells(line: dict, digits: int = 3) -> list[str]:
    row = line["row"]
    cells = [line["forget"], line["pool"], row["examples"], "{} + {}".format(*row["models"])]
    cells += ["—" if value is None else f"{value:.{digits}f}" for value in _audit_numbers(row)]
    accuracy = row["accuracy"]["first"]
    cells.append("/".join("—" if accuracy.get(key) is None else f"{accuracy[key]:.1f}"
                          for key in ("forget", "retain", "test")))
    return cells


AUDIT_HEADERS = ["forget set", "pool", "examples", "models"] + [header for _, header in AUDIT_COLUMNS] + [
    "acc forget/retain/test"]


def render_audit_table(lines: list[dict]) -> Table:
    table = Table(title=f"unlearn audit: each pool against the retrained pool\n{AUDIT_NOTE}")
    for header in AUDIT_HEADERS:
        table.add_column(header, justify="left" if header in ("forget set", "pool", "examples") else "right")
    for line in lines:
        table.add_row(*_audit_cells(line))
    return table


def render_audit_markdown(lines: list[dict]) -> str:
    rows = ["| " + " | ".join(AUDIT_HEADERS) + " |", "|" + "|".join("---" for _ in AUDIT_HEADERS) + "|"]
    rows += ["| " + " | ".join(_audit_cells(line)) + " |" for line in lines]
    return "\n".join(rows) + f"\n\n{AUDIT_NOTE}.\n"


def render_audit_csv(lines: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["forget_set", "pool", "examples", "models_pool", "models_retrained"]
                    + [dotted.replace(".", "_") for dotted, _ in AUDIT_COLUMNS]
                    + ["forget_accuracy", "retain_accuracy", "test_accuracy"])
    for line in lines:
        row = line["row"]
        values = ["" if value is None else repr(value) for value in _audit_numbers(row)]
        accuracy = row["accuracy"]["first"]
        writer.writerow([line["forget"], line["pool"], row["examples"], *row["models"], *values]
                        + ["" if accuracy.get(key) is None else repr(accuracy[key]) for key in ("forget", "retain", "test")])
    return buffer.getvalue()


def _write_audits(lines: list[dict], output_format: ReportFormat, output: str | None, quiet: bool) -> None:
    if output_format is ReportFormat.table:
        if output is None:
            if not quiet:
                stderr.print(render_audit_table(lines))
            return
        console = Console(file=io.StringIO(), width=240, color_system=None)
        console.print(render_audit_table(lines))
        write_output(output, console.file.getvalue().encode(), binary=False)
        return
    text = render_audit_markdown(lines) if output_format is ReportFormat.markdown else render_audit_csv(lines)
    write_output(output or "-", text.encode(), binary=False)


def plot_png(groups: list[Group], oracles: dict[str, dict[str, Summary]]) -> bytes:
    """Forget accuracy, MIA-correctness and test accuracy against the budget; the oracle as a dashed line."""
    plt = pyplot()
    curves: dict[tuple, list[Group]] = {}
    for group in groups:
        if group.key.budget is not None:
            curves.setdefault((group.key.forget_kind, group.key.forget_sha256, group.key.strategy, group.key.method), []).append(group)
    if not curves:
        raise UserError("--plot draws metrics against the mask budget, but no result has one; "
                        "evaluate models unlearned with a mask (`unlearn apply --mask`)")
    several_forget_sets = len({key[1] for key in curves}) > 1
    figure, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(4.5 * len(PLOT_PANELS), 4), constrained_layout=True)
    for axis, (metric, title) in zip(axes, PLOT_PANELS):
        for (kind, forget_sha, strategy, method), members in sorted(curves.items()):
            members = sorted(members, key=lambda group: group.key.budget)
            label = f"{strategy} + {method}" + (f" ({kind}:{forget_sha[:8]})" if several_forget_sets else "")
            axis.errorbar([g.key.budget for g in members], [g.stats[metric].mean for g in members],
                          yerr=[g.stats[metric].margin for g in members], marker="o", capsize=3, label=label)
        for forget_sha, summaries in oracles.items():
            if any(key[1] == forget_sha for key in curves):
                axis.axhline(summaries[metric].mean, color="black", linestyle="--", linewidth=1,
                             label="oracle" + (f" ({forget_sha[:8]})" if several_forget_sets else ""))
        axis.set_xlabel("budget (fraction of parameters)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


@handle_errors
def report(
    files: Annotated[list[str], typer.Argument(help="Results files written by `unlearn evaluate --json`.")],
    output_format: Annotated[Optional[ReportFormat], typer.Option("--format", help="table, markdown or csv (default: table)")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the report to FILE instead of the terminal.")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw metric-vs-budget curves to FILE.png (needs matplotlib).")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        "--baseline", metavar="PIPELINE",
        help="Pair every other pipeline with this one per forget set and seed. Name it 'STRATEGY + METHOD @ BUDGET' "
             "as the paired table labels it, e.g. 'del + rft @ 0.3' or del+rft@0.3; 'finetune' for a method "
             "without a mask; a strategy or budget left out matches any.")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Aggregate evaluation results over seeds: mean ± 95% confidence margin (Student t) per group, with ToW.

    A checkpoint evaluated twice on one forget set counts once (the most complete record); disagreeing ones are refused.
    --baseline adds a paired comparison: differences (pipeline − baseline) of runs with the same forget set and seed.
    """
    cfg = resolve_report_config(config, output_format, baseline)
    output_format = ReportFormat(cfg.format)
    inputs = {"FILES": files, "--config": config}
    if plot is not None:
        pyplot()  # fail before any work when matplotlib is missing
        check_writable(plot, "--plot", inputs)
    if output is not None and output != "-":
        check_writable(output, "--output", {**inputs, "--plot": plot})
    inputs_read = [("stdin" if path == "-" else path, *read_report_input(path)) for path in files]
    audits = audit_lines([content for _, kind, content in inputs_read if kind == "audit"])
    runs = merge_evaluations((source, run) for source, kind, content in inputs_read if kind == "results"
                             for run in content)
    if not runs:  # audit files only: their table is the report
        if plot is not None:
            raise UserError("--plot draws results files; the audit files have their own plot (`unlearn audit --plot`)")
        _write_audits(audits, output_format, output, quiet)
        return
    if audits and output_format is ReportFormat.csv:
        raise UserError("--format csv takes results files or audit files, not both: report them into two CSV files")
    groups = group_runs(runs)
    oracles = oracle_summaries(runs)
    rows = _rows(groups, oracles)
    paired = None
    if cfg.baseline is not None:
        chosen = find_pipeline(cfg.baseline, pipelines(groups))
        paired = (chosen, paired_comparisons(groups, chosen))
    tables = [render_table(rows)] + ([render_paired_table(*paired)] if paired else []) + (
        [render_audit_table(audits)] if audits else [])
    if output_format is ReportFormat.table:
        if output is None:
            if not quiet:
                for table in tables:
                    stderr.print(table)
        else:
            console = Console(file=io.StringIO(), width=240, color_system=None)
            for table in tables:
                console.print(table)
            write_output(output, console.file.getvalue().encode(), binary=False)
    else:
        if output_format is ReportFormat.markdown:
            text = render_markdown(rows) + ("\n" + render_paired_markdown(*paired) if paired else "") + (
                "\n" + render_audit_markdown(audits) if audits else "")
        else:
            text = render_csv(rows, paired)
        write_output(output or "-", text.encode(), binary=False)
    if plot is not None:
        write_output(plot, plot_png(groups, oracles))
        if not quiet:
            stderr.print(f"plot -> {plot}")
