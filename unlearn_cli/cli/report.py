"""`unlearn report`: pool results files, mean ± 95% margin over seeds, as a table, Markdown, CSV or a plot.

Runs are grouped by (forget set, strategy, method, budget, work cap); each oracle used appears as a row of its own.
A checkpoint evaluated more than once on the same forget set counts once: the most complete record is kept,
and records whose numbers disagree are refused (`merge_evaluations`). The ToW column is the Tug-of-War
score of Zhao et al. 2024 (see aggregate.py); cost ×retrain is the runs' work as a multiple of retraining's,
wall ×oracle their wall time as a fraction of the oracle's. Runs evaluated with `--relearn` add a relearn-gap column
per learning rate (docs/relearn.md), and audits made with `--relearn` one per learning rate on their forget rows;
without them the columns are absent.

With --baseline PIPELINE (`[STRATEGY +] METHOD [@ BUDGET] [@ CAP]`, as the pipelines are labelled) a second table
compares every other pipeline with it run by run: mean ± 95% margin of the differences (pipeline − baseline)
of the average gap, the strong average gap and ToW over runs with the same forget set and seed.

With --pareto, per forget set, the pipelines' qualities against cost ×retrain, the non-dominated ones marked,
and F*, the smallest cap at which `retrain @ F` is indistinguishable from the oracle (see evaluate/pareto.py).

Usage:
    unlearn report results/*.json
    unlearn report results/*.json --format markdown -o table.md --plot curves.png
    unlearn report results/*.json --baseline "del + rft @ 0.3"
    unlearn report results/*.json audits/*.json --pareto --plot pareto.png
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
from rich.text import Text

from unlearn_cli.cli.options import with_options
from unlearn_cli.cli.common import ConfigOption, QuietOption, add_row, handle_errors, pyplot, stderr, terminal_text
from unlearn_cli.config import option, resolve_config
from unlearn_cli.errors import UserError, one_line
from unlearn_cli.evaluate.aggregate import (
    PAIRED_KEYS,
    RELEARN_GAP,
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
    relearn_gap_key,
)
from unlearn_cli.evaluate.keys import metric_keys, metric_label, with_interval
from unlearn_cli.evaluate.pareto import (
    F_STAR_METRICS,
    PAIRED_QUALITIES,
    FStar,
    ParetoPoint,
    ParetoSet,
    PoolScore,
    audit_forget_scores,
    has_cost,
    pareto_fronts,
)
from unlearn_cli.evaluate.results import read_report_input
from unlearn_cli.streams import check_writable, write_output

EXTRA_COLUMNS = {"average_gap": ("avg gap", 1.0), "strong_average_gap": ("strong avg gap", 1.0),
                 "fraction_changed": ("changed %", 100.0), "wall_time_s": ("wall s", 1.0),
                 "tow": ("ToW", 1.0), "wall_x_oracle": ("wall ×oracle", 1.0),
                 "cost_x_retrain": ("cost ×retrain", 1.0)}  # appended: earlier CSV columns keep their places
TABLE_COLUMNS = (("forget_accuracy", "forget", 1.0), ("retain_accuracy", "retain", 1.0), ("test_accuracy", "test", 1.0),
                 ("mia_correctness", "MIA-corr", 1.0), ("mia_confidence", "MIA-conf", 1.0), ("average_gap", "avg gap", 1.0),
                 ("strong_average_gap", "strong gap", 1.0), ("fraction_changed", "changed %", 100.0), ("tow", "ToW", 1.0),
                 ("wall_x_oracle", "wall ×oracle", 1.0), ("cost_x_retrain", "cost ×retrain", 1.0))
# a manipulated forget set's metrics, shown (last, so that the other columns keep their places) when a run has them
CORRECTIVE_COLUMNS = (("repaired_accuracy", "repaired", 1.0), ("remembered_accuracy", "remembered", 1.0),
                      ("attack_success_rate", "attack success", 1.0))
EXTRA_DIGITS = {"tow": 3, "wall_x_oracle": 3, "cost_x_retrain": 3}  # ToW lies in [0, 1]: more decimals than the other columns (1 in the table, 2 in Markdown)
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
class ReportConfig:  # the files, -o and --plot are given on the command line
    format: str = option("table", "table, markdown or csv", "--format", choices=tuple(kind.value for kind in ReportFormat))
    baseline: Optional[str] = option(
        None, "Pair every other pipeline with this one per forget set and seed. Name it 'STRATEGY + METHOD @ BUDGET' "
              "as the paired table labels it, e.g. 'del + rft @ 0.3' or del+rft@0.3; 'finetune' for a method "
              "without a mask; 'retrain @ 0.1' for one run at a work cap (a budget and a cap: 'del + rft @ 0.3 @ 0.1'); "
              "a strategy, budget or cap left out matches any.", metavar="PIPELINE")
    pareto: bool = option(
        False, "Add, per forget set, average gap, ToW and (with audit files) forget score against cost ×retrain, the "
               "non-dominated pipelines marked, and F*, the smallest cap at which retrain @ F matches the oracle (table "
               "or Markdown; a PNG with --plot).", switch=True)


def resolve_report_config(config_path: str | None, given: dict) -> ReportConfig:
    cfg = resolve_config(ReportConfig, config_path, given)
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


def _relearn_columns(rows) -> list[tuple[str, str, float]]:
    """A relearn gap column per learning rate that some row's runs were relearned at (runs of `evaluate --relearn`),
    in increasing order of the rate."""
    rates = sorted({float(key.removeprefix(RELEARN_GAP)) for _, _, summaries in rows
                    for key, summary in summaries.items() if key.startswith(RELEARN_GAP) and summary.n})
    return [(relearn_gap_key(rate), f"relearn gap lr {rate:g}", 1.0) for rate in rates]


def _columns(rows=(), only: tuple[str, ...] | None = None) -> list[tuple[str, str, float]]:
    """(key, header, scale) of every aggregated number (or of those in `only`), the corrective and relearning ones
    when `rows` have them."""
    columns = [(key, metric_label(key), 1.0) for key in metric_keys()] + [
        (key, header, scale) for key, (header, scale) in EXTRA_COLUMNS.items()] + _corrective_columns(rows) + \
        _relearn_columns(rows)
    return [column for column in columns if only is None or column[0] in only]


def _text(summary: Summary | None, scale: float, digits: int = 2, separator: str = " ± ", sign: str = "") -> str:
    if summary is None or summary.n == 0:
        return "—"
    margin = "—" if summary.n == 1 else f"{summary.margin * scale:.{digits}f}"
    return f"{summary.mean * scale:{sign}.{digits}f}{separator}{margin}"


def _has_caps(rows) -> bool:
    """Whether some row's runs had a work cap: then the tables gain a `cap` column after the budget."""
    return any(key.cap is not None for key, _, _ in rows)


def _identity(key: GroupKey, count: int, caps: bool = False) -> list[str]:
    budget = "—" if key.budget is None else f"{key.budget:g}"
    cap = ["—" if key.cap is None else f"{key.cap:g}"] if caps else []
    return [f"{key.forget_kind}:{key.forget_sha256[:8]}", key.strategy, key.method, budget, *cap, str(count)]


def _identity_headers(caps: bool) -> list[str]:
    return ["forget set", "strategy", "method", "budget"] + (["cap"] if caps else []) + ["n"]


def render_table(rows) -> Table:
    """The terminal table: the paper's headline numbers, compact (Markdown and CSV carry every metric)."""
    forget_sets = sorted({f"{key.forget_kind}:{key.forget_sha256[:8]}" for key, _, _ in rows})
    title = "unlearn report: mean ± 95% margin over seeds (metrics in %)"
    table = Table(title=title + (f"\nforget set {terminal_text(forget_sets[0])}" if len(forget_sets) == 1 else ""))
    caps = _has_caps(rows)
    identity_headers = (["forget set"] if len(forget_sets) > 1 else []) + ["run", "budget"] + (["cap"] if caps else []) + ["n"]
    for header in identity_headers:
        table.add_column(header)
    columns = list(TABLE_COLUMNS) + _corrective_columns(rows) + _relearn_columns(rows)
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for key, count, summaries in rows:
        forget, strategy, method, *point = _identity(key, count, caps)
        run = method if strategy == "—" else f"{strategy} + {method}"
        cells = ([forget] if len(forget_sets) > 1 else []) + [run, *point]
        add_row(table, cells + [_text(summaries.get(name), scale, digits=EXTRA_DIGITS.get(name, 1), separator="±")
                                 for name, _, scale in columns])
    return table


def _markdown_text(text: str) -> str:
    """Text from a file in a Markdown table or line: one line (control characters escaped), `|` escaped, so a name
    cannot add cells or rows."""
    return one_line(str(text)).replace("|", "\\|")


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(map(_markdown_text, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            + ["| " + " | ".join(map(_markdown_text, cells)) + " |" for cells in rows])


def render_markdown(rows) -> str:
    columns, caps = _columns(rows), _has_caps(rows)
    headers = _identity_headers(caps) + [header for _, header, _ in columns]
    cells = [_identity(key, count, caps) + [_text(summaries.get(name), scale, digits=EXTRA_DIGITS.get(name, 2))
                                            for name, _, scale in columns] for key, count, summaries in rows]
    return "\n".join(_markdown_table(headers, cells)) + "\n"


def _optional_number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _numbers(summary: Summary | None) -> list[str]:
    """Mean and margin for the CSV; the margin of one run is empty (none), as the tables show it as —."""
    if summary is None or summary.n == 0:
        return ["", ""]
    return [f"{summary.mean:.10g}", "" if summary.n == 1 else f"{summary.margin:.10g}"]


PAIRED_CSV_COLUMNS = (["comparison", "baseline_strategy", "baseline_method", "baseline_budget",
                       "unpaired_pipeline", "unpaired_baseline"]
                      + [f"{name}_diff_{part}" for name in PAIRED_KEYS for part in ("mean", "margin", "n", "verdict")]
                      + ["baseline_cap"])


def render_csv(rows, paired: tuple[Pipeline, list[PairedRow]] | None = None) -> str:
    """One row per table row, the work cap last (`cap`, empty without one); with `paired`, the comparison's
    columns are appended (empty on those rows) and one `comparison=paired` row per pipeline and forget set
    follows, `n` holding the pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [name for name, _, _ in _columns(rows)]
    writer.writerow(["forget_kind", "forget_sha256", "strategy", "method", "budget", "n"]
                    + [f"{name}_{part}" for name in names for part in ("mean", "margin")] + ["cap"]
                    + (PAIRED_CSV_COLUMNS if paired else []))
    extra = [""] * len(PAIRED_CSV_COLUMNS) if paired else []
    for key, count, summaries in rows:
        numbers = [value for name in names for value in _numbers(summaries.get(name))]
        writer.writerow([key.forget_kind, key.forget_sha256, key.strategy, key.method, _optional_number(key.budget), count]
                        + numbers + [_optional_number(key.cap)] + extra)
    if paired:
        baseline, comparisons = paired
        for row in comparisons:
            differences = []
            for name in PAIRED_KEYS:
                summary = row.differences[name]
                verdict = row.verdicts[name]
                differences += _numbers(summary) + [summary.n, "" if verdict == UNDECIDED else verdict]
            writer.writerow([row.forget_kind, row.forget_sha256, row.pipeline.strategy, row.pipeline.method,
                             _optional_number(row.pipeline.budget), row.pairs] + [""] * (2 * len(names))
                            + [_optional_number(row.pipeline.cap), "paired", baseline.strategy, baseline.method,
                               _optional_number(baseline.budget), row.unpaired_pipeline, row.unpaired_baseline] + differences
                            + [_optional_number(baseline.cap)])
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
    table = Table(title=f"paired against baseline {terminal_text(baseline.label)}: mean ± 95% margin of the differences\n{PAIRED_NOTE}")
    for header in _paired_headers(several):
        table.add_column(header, justify="right" if header.startswith("Δ") else "left")
    for row in comparisons:
        decided = any(verdict not in ("level", UNDECIDED) for verdict in row.verdicts.values())
        add_row(table, _paired_cells(row, several), style="bold" if decided else None)
    if not comparisons:
        table.caption = "no other pipeline to compare"
    return table


def render_paired_markdown(baseline: Pipeline, comparisons: list[PairedRow]) -> str:
    several = True  # like the first Markdown table, always with the forget set
    headers = _paired_headers(several)
    lines = [f"Paired against baseline `{_markdown_text(baseline.label)}`: mean ± 95% margin; {PAIRED_NOTE}.", ""]
    lines += _markdown_table(headers, [_paired_cells(row, several) for row in comparisons])
    return "\n".join(lines) + "\n"


# --- cost against quality (`--pareto`) ---------------------------------------------------------------------
PARETO_HEADERS = {"average_gap": "avg gap", "tow": "ToW", "forget_score": "forget score"}
PARETO_DIGITS = {"average_gap": 2, "tow": 3}
PARETO_NOTE = ("non-dominated on a quality: no pipeline that costs at most as much (mean cost ×retrain) is better with "
               "a paired 95% interval (same forget set and seed) that excludes 0; avg gap: lower is better, "
               "ToW and forget score: higher")
F_STAR_HEADERS = ["retrain @ F", "n"] + [f"Δ {metric_label(name)}" for name in F_STAR_METRICS] + ["like the oracle"]
NO_COST = ("--pareto places pipelines by cost ×retrain, but no result has a cost (results written before cost "
           "accounting have none); evaluate checkpoints that record their work with `unlearn evaluate --json`")


def _pareto_qualities(sets: list[ParetoSet]) -> tuple[str, ...]:
    scored = any(point.forget_score is not None for front in sets for point in front.points)
    return PAIRED_QUALITIES + (("forget_score",) if scored else ())


def _score_text(score: PoolScore | None) -> str:
    if score is None:
        return "—"
    return f"{score.value:.3f}" + ("" if score.low is None else f" [{score.low:.3f}, {score.high:.3f}]")


def _pareto_cells(point: ParetoPoint, qualities: tuple[str, ...]) -> list[str]:
    cells = [point.pipeline.label, str(point.group.count), _text(point.cost, 1.0, digits=3) if point.placed else "unknown"]
    cells += [_score_text(point.forget_score) if quality == "forget_score"
              else _text(point.quality(quality), 1.0, digits=PARETO_DIGITS[quality]) for quality in qualities]
    front = ", ".join(PARETO_HEADERS[quality] for quality in point.front) or "—"
    return cells + [front if point.placed else "cannot be placed"]


def _pareto_headers(qualities: tuple[str, ...]) -> list[str]:
    return ["pipeline", "n", "cost ×retrain"] + [PARETO_HEADERS[quality] for quality in qualities] + ["non-dominated on"]


def f_star_line(f_star: FStar) -> str:
    if not f_star.checks:
        return "F*: no retrain @ F results on this forget set"
    if f_star.value is not None:
        return f"F* = {f_star.value:g}"
    return f"F* > {f_star.largest:g}: no cap tried was enough"


def _pareto_notes(front: ParetoSet, qualities: tuple[str, ...]) -> list[str]:
    """The lines under a forget set's Pareto table: the reference curve, what is not placed, how the forget score
    is compared, and F*."""
    notes = []
    reference = [point.pipeline.label for point in front.points if point.reference]
    if reference:
        notes.append(f"reference curve (retraining from scratch at a fraction F of the recipe): {', '.join(reference)}")
    if front.unplaced:
        notes.append(f"cost unknown (results without cost accounting), so these pipelines cannot be placed: "
                     f"{', '.join(point.pipeline.label for point in front.unplaced)}")
    if "forget_score" in qualities:
        scores = [point.forget_score for point in front.points if point.forget_score is not None]
        notes.append("forget score: per pool, not per run, so unpaired; " + (
            "dominance where the audits' intervals do not overlap" if all(score.low is not None for score in scores)
            else "some audits carry no interval, so dominance is marked on non-overlapping values only "
                 "(a higher score, or an interval wholly above)"))
    return notes + [f_star_line(front.f_star)]


def _f_star_cells(f_star: FStar) -> list[list[str]]:
    rows = []
    for check in f_star.checks:
        pairs = max(difference.n for difference in check.differences.values())
        rows.append([f"{check.cap:g}", str(pairs)] + [_text(check.differences[name], 1.0, sign="+") for name in F_STAR_METRICS]
                    + ["yes" if check.indistinguishable else "no"])
    return rows


def _forget_name(front: ParetoSet) -> str:
    return f"{front.forget_kind}:{front.forget_sha256[:8]}"


def render_pareto_tables(sets: list[ParetoSet]) -> list[Table | Text]:
    """Per forget set: the pipelines by cost with their qualities and fronts, the notes (lines of their own, not a
    caption wrapped to the table's width), then retrain @ F against the oracle."""
    qualities, tables = _pareto_qualities(sets), []
    for front in sets:
        table = Table(title=f"cost against quality, forget set {terminal_text(_forget_name(front))}: mean ± 95% margin over seeds\n"
                            f"{PARETO_NOTE}")
        for header in _pareto_headers(qualities):
            table.add_column(header, justify="left" if header in ("pipeline", "non-dominated on") else "right")
        for point in front.points:
            add_row(table, _pareto_cells(point, qualities), style="bold" if point.front else None)
        tables += [table, Text("\n".join(map(one_line, _pareto_notes(front, qualities))))]
        if front.f_star.checks:
            detail = Table(title=f"retrain @ F − oracle, per seed (forget set {terminal_text(_forget_name(front))}): mean ± 95% margin")
            for header in F_STAR_HEADERS:
                detail.add_column(header, justify="right")
            for cells in _f_star_cells(front.f_star):
                add_row(detail, cells)
            tables.append(detail)
    return tables


def render_pareto_markdown(sets: list[ParetoSet]) -> str:
    qualities, lines = _pareto_qualities(sets), []
    for front in sets:
        lines += [f"Cost against quality, forget set `{_markdown_text(_forget_name(front))}`: mean ± 95% margin over seeds; {PARETO_NOTE}.",
                  ""] + _markdown_table(_pareto_headers(qualities), [_pareto_cells(point, qualities) for point in front.points])
        lines += [""] + [f"- {_markdown_text(note)}" for note in _pareto_notes(front, qualities)]
        if front.f_star.checks:
            lines += ["", f"`retrain @ F` − oracle, per seed: mean ± 95% margin; F* is the smallest F whose four "
                          f"intervals all contain 0.", ""] + _markdown_table(F_STAR_HEADERS, _f_star_cells(front.f_star))
        lines.append("")
    return "\n".join(lines)


# --- audit files (`unlearn audit --json`) ----------------------------------------------------------------
# (header, CSV name, where the number is in a row, where its [low, high] interval is or None); the intervals,
# the excess and the normalized numbers are absent from audits written before them (shown as —)
AUDIT_COLUMNS = (
    ("forget score", "forget_score", "forget_score", "intervals.forget_score"),
    ("normalized", "normalized_score", "normalized_score.value", "normalized_score.interval"),
    ("F-excess", "forget_score_excess", "excess.forget_score.excess", "excess.forget_score.interval"),
    ("final score", "final_score", "final_score", None),
    ("attack acc", "attack_accuracy", "attack_accuracy", "intervals.attack_accuracy"),
    ("attack acc, normalized φ", "attack_normalized_accuracy", "attack_normalized.accuracy", None),
    ("attack AUC", "attack_auc", "attack_auc", "intervals.attack_auc"),
    ("KL mean", "kl_gaussian_mean", "kl_gaussian.mean", "intervals.kl_gaussian_mean"),
    ("KL p95", "kl_gaussian_p95", "kl_gaussian.p95", None),
    ("binned KL mean", "kl_binned_mean", "kl_binned.mean", None),
    ("median ε", "epsilon_median", "epsilon.median", None),
)
AUDIT_NOTE = ("forget score: mean points of the per-example ε (1 = every example indistinguishable from "
              "retraining), [95% bootstrap interval]; normalized: 0 = the originals' score, 1 = the ceiling's; "
              "F-excess: the forget score on F minus on a matched unseen sample; attack: leave-one-out likelihood "
              "ratio, 0.5 = chance; KL(retrained ‖ pool) of φ")


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
    order = {part: position for position, part in enumerate(("forget", "forget:low", "forget:mid", "forget:high",
                                                               "retain", "test"))}  # the terciles: audit --memorization
    kind = {"unlearned": 0, "original": 1, "ceiling": 2, "half": 2}
    return sorted(lines, key=lambda line: (line["forget"], order.get(line["row"]["examples"], len(order)),
                                           kind.get(line["row"]["pool"], 3), line["pool"]))


def _lookup(row: dict, dotted: str | None):
    """The value at a dotted path of an audit row, or None where any part is absent (older audits) or null."""
    if dotted is None:
        return None
    value = row
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _audit_numbers(row: dict) -> list[tuple]:
    """(value, [low, high] or None) of every AUDIT_COLUMNS entry of a row."""
    numbers = []
    for _, _, dotted, interval in AUDIT_COLUMNS:
        bounds = _lookup(row, interval)
        numbers.append((_lookup(row, dotted), bounds if isinstance(bounds, list) and len(bounds) == 2 else None))
    return numbers


def _relearn_rates(lines: list[dict]) -> list[float]:
    """The learning rates the audits' rows were relearned at (`audit --relearn`), in increasing order; none for
    audits without relearning."""
    return sorted({entry["lr"] for line in lines for entry in line["row"].get("relearn") or []})


def _relearn_numbers(row: dict, rates: list[float]) -> list[tuple]:
    """(relearn gap, [low, high] or None) of a row at each rate; (None, None) where the row has none (a control row,
    an audit without relearning)."""
    entries = {entry["lr"]: entry for entry in row.get("relearn") or []}
    return [(entries.get(rate, {}).get("gap"), entries.get(rate, {}).get("interval")) for rate in rates]


def _audit_cells(line: dict, rates: list[float], digits: int = 3) -> list[str]:
    row = line["row"]
    cells = [line["forget"], line["pool"], row["examples"], "{} + {}".format(*row["models"])]
    cells += [with_interval(value, interval, digits) for value, interval in _audit_numbers(row)]
    accuracy = row["accuracy"]["first"]
    cells.append("/".join("—" if accuracy.get(key) is None else f"{accuracy[key]:.1f}"
                          for key in ("forget", "retain", "test")))
    return cells + [with_interval(value, interval, 2) for value, interval in _relearn_numbers(row, rates)]


AUDIT_HEADERS = ["forget set", "pool", "examples", "models"] + [column[0] for column in AUDIT_COLUMNS] + [
    "acc forget/retain/test"]
RELEARN_NOTE = ("relearn gap: mean over the relearning steps of the pool's accuracy on the forget set's rest − the "
                "retrained pool's, in points (0: relearns like a model that never saw F), [95% t-interval over the "
                "pairs of models]")


def _audit_headers(rates: list[float]) -> list[str]:
    return AUDIT_HEADERS + [f"relearn gap lr {rate:g}" for rate in rates]


def _audit_note(rates: list[float]) -> str:
    return AUDIT_NOTE + (f"; {RELEARN_NOTE}" if rates else "")


def render_audit_table(lines: list[dict]) -> Table:
    rates = _relearn_rates(lines)
    table = Table(title=f"unlearn audit: each pool against the retrained pool\n{_audit_note(rates)}")
    for header in _audit_headers(rates):
        table.add_column(header, justify="left" if header in ("forget set", "pool", "examples") else "right")
    for line in lines:
        add_row(table, _audit_cells(line, rates))
    return table


def render_audit_markdown(lines: list[dict]) -> str:
    rates = _relearn_rates(lines)
    headers = _audit_headers(rates)
    rows = _markdown_table(headers, [_audit_cells(line, rates) for line in lines])
    return "\n".join(rows) + f"\n\n{_audit_note(rates)}.\n"


def render_audit_csv(lines: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["forget_set", "pool", "examples", "models_pool", "models_retrained"]
    for _, name, _, interval in AUDIT_COLUMNS:
        header += [name] + ([f"{name}_low", f"{name}_high"] if interval else [])
    rates = _relearn_rates(lines)  # appended: earlier columns keep their places
    writer.writerow(header + ["forget_accuracy", "retain_accuracy", "test_accuracy"]
                    + [f"{relearn_gap_key(rate)}{part}" for rate in rates for part in ("", "_low", "_high")])
    text = lambda value: "" if value is None else repr(value)  # noqa: E731
    for line in lines:
        row = line["row"]
        values = []
        for (value, interval), column in zip(_audit_numbers(row), AUDIT_COLUMNS):
            values += [text(value)] + ([text(bound) for bound in (interval or (None, None))] if column[3] else [])
        accuracy = row["accuracy"]["first"]
        relearn = [text(number) for value, interval in _relearn_numbers(row, rates)
                   for number in (value, *(interval or (None, None)))]
        writer.writerow([line["forget"], line["pool"], row["examples"], *row["models"], *values]
                        + [text(accuracy.get(key)) for key in ("forget", "retain", "test")] + relearn)
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
            curves.setdefault((group.key.forget_kind, group.key.forget_sha256, group.key.strategy, group.key.method,
                               group.key.cap), []).append(group)
    if not curves:
        raise UserError("--plot draws metrics against the mask budget, but no result has one; "
                        "evaluate models unlearned with a mask (`unlearn apply --mask`)")
    several_forget_sets = len({key[1] for key in curves}) > 1
    figure, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(4.5 * len(PLOT_PANELS), 4), constrained_layout=True)
    for axis, (metric, title) in zip(axes, PLOT_PANELS):
        for (kind, forget_sha, strategy, method, cap), members in sorted(curves.items(),
                                                                          key=lambda item: item[1][0].key.sort_key):
            members = sorted(members, key=lambda group: group.key.budget)
            label = f"{strategy} + {method}" + ("" if cap is None else f" (cap {cap:g})") + (
                f" ({kind}:{forget_sha[:8]})" if several_forget_sets else "")
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


def _point_value(quality: Summary | PoolScore | None) -> tuple[float, list[float]] | None:
    """(value, [below, above]) error bar lengths of a quality, or None when there is none."""
    if quality is None:
        return None
    if isinstance(quality, PoolScore):
        low, high = quality.interval
        return quality.value, [quality.value - low, high - quality.value]
    return quality.mean, [quality.margin, quality.margin]


def _draw_pareto_panel(axis, points: list[ParetoPoint], quality: str) -> None:
    """One quality against cost: every placed pipeline (a star when non-dominated), the retrain @ F curve dashed."""
    drawn = [(point, value) for point in points if point.placed and (value := _point_value(point.quality(quality)))]
    reference = sorted((point for point, _ in drawn if point.reference), key=lambda point: point.pipeline.cap)
    if reference:
        axis.plot([point.cost.mean for point in reference], [_point_value(point.quality(quality))[0] for point in reference],
                  linestyle="--", color="gray", label="retrain @ F (reference)")
    for point, (value, bar) in drawn:
        front = quality in point.front
        axis.errorbar(point.cost.mean, value, xerr=point.cost.margin, yerr=[[bar[0]], [bar[1]]], capsize=2,
                      fmt="*" if front else "o", markersize=11 if front else 5, color="C3" if front else "C0",
                      label="non-dominated" if front else "dominated")
        axis.annotate(point.pipeline.label, (point.cost.mean, value), xytext=(4, 3), textcoords="offset points",
                      fontsize=7)
    if drawn and all(point.cost.mean > 0 for point, _ in drawn):
        axis.set_xscale("log")
    handles = dict(zip(*reversed(axis.get_legend_handles_labels())))  # label -> one handle
    if handles:
        axis.legend(handles.values(), handles.keys(), fontsize=7)
    axis.set_xlabel("cost ×retrain (work ÷ retraining's)")
    axis.grid(alpha=0.3)


def pareto_png(sets: list[ParetoSet]) -> bytes:
    """Per forget set a row of panels, one per quality, against cost ×retrain."""
    plt = pyplot()
    qualities = _pareto_qualities(sets)
    figure, axes = plt.subplots(len(sets), len(qualities), figsize=(6.5 * len(qualities), 5 * len(sets)),
                                squeeze=False, constrained_layout=True)
    for row, front in zip(axes, sets):
        for axis, quality in zip(row, qualities):
            _draw_pareto_panel(axis, front.points, quality)
            axis.set_title(f"{PARETO_HEADERS[quality]}, {_forget_name(front)}\n{f_star_line(front.f_star)}", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def _write_report(tables: list[Table], markdown: list[str], csv_text: str | None, output_format: ReportFormat,
                  output: str | None, quiet: bool) -> None:
    """The tables to the terminal (or -o), or the Markdown parts, or the CSV, to -o or stdout."""
    if output_format is ReportFormat.table:
        if output is None:
            if not quiet:
                for table in tables:
                    stderr.print(table)
            return
        console = Console(file=io.StringIO(), width=240, color_system=None)
        for table in tables:
            console.print(table)
        write_output(output, console.file.getvalue().encode(), binary=False)
        return
    text = "\n".join(markdown) if output_format is ReportFormat.markdown else csv_text
    write_output(output or "-", text.encode(), binary=False)


@handle_errors
@with_options(ReportConfig)
def report(
    given: dict,
    files: Annotated[list[str], typer.Argument(help="Results files written by `unlearn evaluate --json`.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the report to FILE instead of the terminal.")] = None,
    plot: Annotated[Optional[str], typer.Option(
        "--plot", help="Draw metric-vs-budget curves (with --pareto: quality against cost) to FILE.png "
                       "(needs matplotlib).")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Aggregate evaluation results over seeds: mean ± 95% confidence margin (Student t) per group, with ToW.

    A checkpoint evaluated twice on one forget set counts once (the most complete record); disagreeing ones are refused.
    --baseline adds a paired comparison: differences (pipeline − baseline) of runs with the same forget set and seed.
    --pareto adds cost against quality: the pipelines no cheaper one beats by a paired 95% interval, and F*.
    """
    cfg = resolve_report_config(config, given)
    output_format = ReportFormat(cfg.format)
    if cfg.pareto and output_format is ReportFormat.csv:
        raise UserError("--pareto renders as a table or Markdown (--format table|markdown), and as a PNG with --plot; "
                        "the CSV without --pareto holds every pipeline's cost_x_retrain")
    inputs = {"FILES": files, "--config": config}
    if plot is not None:
        pyplot()  # fail before any work when matplotlib is missing
        check_writable(plot, "--plot", inputs)
    if output is not None and output != "-":
        check_writable(output, "--output", {**inputs, "--plot": plot})
    inputs_read = [("stdin" if path == "-" else path, *read_report_input(path)) for path in files]
    audit_documents = [content for _, kind, content in inputs_read if kind == "audit"]
    audits = audit_lines(audit_documents)
    runs = merge_evaluations((source, run) for source, kind, content in inputs_read if kind == "results"
                             for run in content)
    if not runs and not cfg.pareto:  # audit files only: their table is the report
        if plot is not None:
            raise UserError("--plot draws results files; the audit files have their own plot (`unlearn audit --plot`)")
        _write_audits(audits, output_format, output, quiet)
        return
    if audits and output_format is ReportFormat.csv:
        raise UserError("--format csv takes results files or audit files, not both: report them into two CSV files")
    groups = group_runs(runs)
    if cfg.pareto and not has_cost(groups):
        raise UserError(NO_COST)
    oracles = oracle_summaries(runs)
    rows = _rows(groups, oracles)
    paired = None
    if cfg.baseline is not None:
        chosen = find_pipeline(cfg.baseline, pipelines(groups))
        paired = (chosen, paired_comparisons(groups, chosen))
    fronts = pareto_fronts(groups, audit_forget_scores(audit_documents, groups)) if cfg.pareto else None
    tables = [render_table(rows)] + ([render_paired_table(*paired)] if paired else []) + (
        render_pareto_tables(fronts) if fronts else []) + ([render_audit_table(audits)] if audits else [])
    markdown = [render_markdown(rows)] + ([render_paired_markdown(*paired)] if paired else []) + (
        [render_pareto_markdown(fronts)] if fronts else []) + ([render_audit_markdown(audits)] if audits else [])
    csv_text = render_csv(rows, paired) if output_format is ReportFormat.csv else None
    _write_report(tables, markdown, csv_text, output_format, output, quiet)
    if plot is not None:
        write_output(plot, pareto_png(fronts) if fronts else plot_png(groups, oracles))
        if not quiet:
            stderr.print(f"plot -> {plot}")
