"""Aggregation of evaluation runs over seeds: mean ± 95% confidence margin (Student t).

margin = t_{0.975, n−1} · s / √n with s the sample standard deviation (n − 1 in the denominator);
a single run has margin 0 (shown as "—").

Besides the metrics and the gaps, every run with an oracle gets the Tug-of-War score of Zhao et al. 2024
("What makes unlearning hard and what to do about it"): ToW = Π over forget, retain and test accuracy of
(1 − |acc − oracle acc| / 100), in [0, 1], 1 when the model matches the oracle (`tug_of_war`).

Two costs are aggregated: `cost_x_retrain`, the run's work (localization + unlearning, in examples forwarded
+ 2 × examples back-propagated) as a multiple of retraining on the retain set with the parent's recipe (the
result's `cost.x_retrain`; unknown, never 0, for results written before cost accounting), and `wall_x_oracle`,
its wall time as a fraction of its oracle's training time (machine-dependent).

A run evaluated with `--relearn` adds its relearn gap against its own oracle at each learning rate,
`relearn_gap_lr<lr>` (docs/relearn.md): aggregated over the runs of a group, each run paired with the oracle it
was evaluated with, it is the mean gap over seeds with its 95% t-margin.

A pipeline is (strategy, method, budget, cap): the same method run under a work cap (`apply --max-cost F`,
the result's `cost.cap`) is another pipeline at each cap, e.g. `retrain @ 0.1`, retraining from scratch
compressed to a tenth of the recipe.

`paired_comparisons` compares every pipeline with a baseline pipeline run by run: the pipelines share
originals, oracles and forget sets, so the differences (pipeline − baseline) of runs on the same forget set
with the same seed are aggregated, not the pipelines' independent margins.

The same checkpoint evaluated more than once on the same forget set (same `model.sha256` and
`forget.sha256`) is one run: `merge_evaluations` keeps the most complete record (the oracle comparison
of one and the parameters-changed measurement of another are combined), and refuses records whose
numbers disagree.

Usage:
    runs = merge_evaluations([("a.json", run), ("b.json", run), ...])   # (results file, result object) pairs
    groups = group_runs(runs)            # runs: result objects of `unlearn-results/1` files
    for group in groups: group.key, group.count, group.stats["forget_accuracy"]   # Summary(mean, margin, n)
    oracle_summaries(runs)               # forget sha -> {metric: Summary} over distinct oracles
    baseline = find_pipeline("del + rft @ 0.3", pipelines(groups))
    paired_comparisons(groups, baseline)  # PairedRow per other pipeline and forget set
    paired_difference(group, other_group, "tow")  # Summary of group − other_group, runs paired on the seed
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.keys import metric_keys

SUMMARY_KEYS = ("average_gap", "strong_average_gap", "fraction_changed", "wall_time_s")
TOW_METRICS = ("forget_accuracy", "retain_accuracy", "test_accuracy")
# paired scores -> True when higher is better (the gaps are distances to the oracle: lower is better)
PAIRED_KEYS = {"average_gap": False, "strong_average_gap": False, "tow": True}
BASELINE_BETTER, BASELINE_WORSE, LEVEL, UNDECIDED = "baseline better", "baseline worse", "level", "—"


@dataclass(frozen=True)
class Summary:
    mean: float
    margin: float  # half-width of the 95% confidence interval; 0 for one run
    n: int


@dataclass(frozen=True)
class GroupKey:
    forget_kind: str
    forget_sha256: str
    strategy: str
    method: str
    budget: float | None
    cap: float | None = None  # the work cap the runs were given (`cost.cap`), or None

    @property
    def sort_key(self) -> tuple:
        return (self.forget_kind, self.forget_sha256, self.strategy, self.method,
                -1.0 if self.budget is None else self.budget, -1.0 if self.cap is None else self.cap)


@dataclass
class Group:
    key: GroupKey
    runs: list[dict]
    stats: dict[str, Summary]

    @property
    def count(self) -> int:
        return len(self.runs)


def summarize(values: list[float]) -> Summary:
    """Mean and 95% t-margin of the finite values (NaN mean when there are none)."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    if n == 0:
        return Summary(float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n == 1:
        return Summary(mean, 0.0, 1)
    deviation = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy import stats  # imported on use: scipy's import slows every command's start

    return Summary(mean, float(stats.t.ppf(0.975, n - 1)) * deviation / math.sqrt(n), n)


def tug_of_war(metrics: dict, oracle_metrics: dict | None) -> float | None:
    """ToW (Zhao et al. 2024) = Π_{forget, retain, test} (1 − |acc − oracle acc| / 100), accuracies in %;
    None without an oracle or with an accuracy missing on either side."""
    if not oracle_metrics:
        return None
    score = 1.0
    for key in TOW_METRICS:
        mine, oracle = metrics.get(key), oracle_metrics.get(key)
        if mine is None or oracle is None or not math.isfinite(mine) or not math.isfinite(oracle):
            return None
        score *= 1.0 - abs(mine - oracle) / 100.0
    return score


RELEARN_GAP = "relearn_gap_lr"  # a run's relearn gap at learning rate 0.01 is aggregated as relearn_gap_lr0.01


def relearn_gap_key(rate: float) -> str:
    """The name a run's relearn gap at learning rate `rate` is aggregated under: `relearn_gap_lr0.01`."""
    return f"{RELEARN_GAP}{rate:g}"


def run_values(run: dict) -> dict[str, float | None]:
    """The numbers of one result object that are aggregated: every metric, the summary scores, ToW and (evaluated
    with --relearn) the relearn gap per learning rate."""
    values = {key: run["metrics"].get(key) for key in metric_keys(corrective=True)}
    values.update({key: run.get(key) for key in SUMMARY_KEYS})
    oracle = run.get("oracle")
    values["tow"] = tug_of_war(run["metrics"], oracle.get("metrics") if oracle else None)
    values["wall_x_oracle"] = cost_fraction(run.get("wall_time_s"), oracle.get("wall_time_s") if oracle else None)
    values["cost_x_retrain"] = run_cost(run, "x_retrain")
    for curve in (run.get("relearn") or {}).get("curves", []):
        values[relearn_gap_key(curve["lr"])] = curve["gap"]
    return values


def run_cost(run: dict, name: str) -> float | None:
    """The number `name` of a result's `cost` object; None when the result has no cost (written before it)."""
    cost = run.get("cost")
    value = cost.get(name) if isinstance(cost, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def cost_fraction(seconds: float | None, oracle_seconds: float | None) -> float | None:
    """A run's wall time as a fraction of its oracle's (the retraining it avoids); None when either is unknown."""
    if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in (seconds, oracle_seconds)):
        return None
    return seconds / oracle_seconds if oracle_seconds > 0 else None


def forget_identity(run: dict) -> str:
    """The forget set a result belongs to: its hash, or for a manipulated set of which only a part was known, the
    known part's (the same manipulated set unlearned knowing all of it and knowing half are two experiments)."""
    known = run["forget"].get("known")
    return known["sha256"] if isinstance(known, dict) and isinstance(known.get("sha256"), str) else run["forget"]["sha256"]


def forget_kind(run: dict) -> str:
    """The forget set's kind as a report shows it; a manipulated set of which only part was known says how much."""
    known = run["forget"].get("known")
    share = known.get("share") if isinstance(known, dict) else None
    kind = run["forget"]["kind"] or "indices"
    return f"{kind} (known {share:g})" if isinstance(share, (int, float)) and share < 1 else kind


def key_of(run: dict) -> GroupKey:
    return GroupKey(forget_kind=forget_kind(run), forget_sha256=forget_identity(run),
                    strategy=run["strategy"] or "—", method=run["method"] or "—", budget=run["budget"],
                    cap=run_cost(run, "cap"))


# Parts of a result object that one evaluation may have measured and another not: (present when this field
# is not null, the fields that travel together, the fields that must agree where both records have the part).
OPTIONAL_PARTS = (
    ("oracle", ("oracle", "gaps", "average_gap", "strong_average_gap", "allow_mismatch"),
     ("oracle.sha256", "oracle.metrics", "gaps", "average_gap", "strong_average_gap")),
    ("fraction_changed", ("parent", "fraction_changed"), ("parent.sha256", "fraction_changed")),
    ("cost", ("cost",), ("cost",)),  # absent from results written before cost accounting
    ("relearn", ("relearn",), ("relearn",)),  # measured with `evaluate --relearn` only
)
# Fields every evaluation of the same checkpoint on the same forget set measures or reads from the checkpoint.
SHARED_FIELDS = ("metrics", "method", "strategy", "budget", "seed", "wall_time_s", "mask_sha256")


def _field(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _same(first, second) -> bool:
    """Equal JSON values, numbers within rounding (1e-9 relative)."""
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_same(first[key], second[key]) for key in first)
    numbers = (int, float)
    if isinstance(first, numbers) and isinstance(second, numbers) and not isinstance(first, bool) \
            and not isinstance(second, bool):
        return math.isclose(first, second, rel_tol=1e-9, abs_tol=1e-12)
    return first == second


def _difference(first, second) -> str:
    """The first differing entry of two unequal values, as `key (a vs b)`."""
    if isinstance(first, dict) and isinstance(second, dict):
        for key in sorted(first.keys() | second.keys()):
            if not _same(first.get(key), second.get(key)):
                return f".{key}{_difference(first.get(key), second.get(key))}"
    return f" ({first!r:.40} vs {second!r:.40})"


def _check_agree(first: tuple[str, dict], second: tuple[str, dict], fields: Iterable[str]) -> None:
    """A UserError naming both sources when the two records differ in one of `fields`."""
    (first_source, first_run), (second_source, second_run) = first, second
    for name in fields:
        one, other = _field(first_run, name), _field(second_run, name)
        if not _same(one, other):
            where = (f"{first_source} holds two evaluations" if first_source == second_source
                     else f"{first_source} and {second_source} both hold an evaluation")
            raise UserError(f"{where} of model {first_run['model']['sha256'][:12]}… ({first_run['model']['source']}) "
                            f"on forget set {first_run['forget']['sha256'][:12]}… that disagree on "
                            f"{name}{_difference(one, other)}; pass only one of them to `unlearn report`")


def _parts(run: dict) -> int:
    return sum(run.get(present) is not None for present, _, _ in OPTIONAL_PARTS)


def merge_evaluations(sourced: Iterable[tuple[str, dict]]) -> list[dict]:
    """One result object per (model.sha256, forget.sha256), in order of first appearance.

    `sourced` holds (source, result object) pairs, the source being the results file that holds it (named in
    errors). Of repeated evaluations the most complete is kept: the one with more of the optional parts (an
    oracle comparison; a parameters-changed measurement), the first of equals; a part only another record has
    is copied from it. Records whose metrics, identity or shared parts differ are a UserError naming both sources.
    """
    merged: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for source, run in sourced:
        merged.setdefault((run["model"]["sha256"], forget_identity(run)), []).append((source, run))
    runs = []
    for evaluations in merged.values():
        kept = max(evaluations, key=lambda pair: _parts(pair[1]))  # max keeps the first of equals
        result = dict(kept[1])
        part_source = {present: kept[0] for present, _, _ in OPTIONAL_PARTS}  # where each part of `result` is from
        for other in evaluations:
            if other is kept:
                continue
            _check_agree(kept, other, SHARED_FIELDS)
            source, run = other
            for present, carried, compared in OPTIONAL_PARTS:
                if run.get(present) is None:
                    continue
                if result.get(present) is None:
                    result.update({name: run.get(name) for name in carried})
                    part_source[present] = source
                else:
                    _check_agree((part_source[present], result), other, compared)
        runs.append(result)
    return runs


def group_runs(runs: list[dict]) -> list[Group]:
    """Runs grouped by (forget set, strategy, method, budget, cap), one summary per metric; a checkpoint
    evaluated more than once on the same forget set counts once (see merge_evaluations)."""
    grouped: dict[GroupKey, list[dict]] = {}
    for run in merge_evaluations((f"run {position}", run) for position, run in enumerate(runs)):
        grouped.setdefault(key_of(run), []).append(run)
    groups = []
    for key, members in grouped.items():
        columns = [run_values(run) for run in members]
        names = dict.fromkeys(name for column in columns for name in column)  # relearn gaps: only some runs have them
        stats_ = {name: summarize([column.get(name) for column in columns]) for name in names}
        groups.append(Group(key=key, runs=members, stats=stats_))
    return sorted(groups, key=lambda group: group.key.sort_key)


def oracle_summaries(runs: list[dict]) -> dict[str, dict[str, Summary]]:
    """Per forget set (sha256): each metric of the oracle, over the distinct oracle checkpoints used."""
    oracles: dict[str, dict[str, dict]] = {}
    for run in runs:
        oracle = run.get("oracle")
        if oracle:
            oracles.setdefault(forget_identity(run), {})[oracle["sha256"]] = oracle["metrics"]
    return {forget: {key: summarize([metrics.get(key) for metrics in by_sha.values()]) for key in metric_keys(True)}
            for forget, by_sha in oracles.items()}


# --- paired comparison against a baseline pipeline ---------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """What produced a group's checkpoints, whatever the forget set: (strategy, method, budget, cap)."""

    strategy: str  # "—" without a mask
    method: str
    budget: float | None
    cap: float | None = None

    @property
    def label(self) -> str:
        """`del + rft @ 0.3`, `del + rft`, `finetune`, with a work cap `retrain @ 0.1` or `del + rft @ 0.3 @ 0.1`
        (budget, then cap): what --baseline accepts."""
        text = self.method if self.strategy == "—" else f"{self.strategy} + {self.method}"
        return "".join([text] + [f" @ {value:g}" for value in (self.budget, self.cap) if value is not None])

    @property
    def sort_key(self) -> tuple:
        return (self.strategy, self.method, -1.0 if self.budget is None else self.budget,
                -1.0 if self.cap is None else self.cap)


def pipeline_of(key: GroupKey) -> Pipeline:
    return Pipeline(key.strategy, key.method, key.budget, key.cap)


def pipelines(groups: list[Group]) -> list[Pipeline]:
    """The distinct pipelines of `groups`, sorted."""
    return sorted({pipeline_of(group.key) for group in groups}, key=lambda pipeline: pipeline.sort_key)


def _close(value: float | None, number: float) -> bool:
    return value is not None and math.isclose(value, number, rel_tol=1e-9, abs_tol=1e-12)


def _operating_point(pipeline: Pipeline, numbers: list[float]) -> tuple[bool, bool]:
    """(matches, matches with nothing left out) of the numbers written after '@' against the pipeline's budget
    and cap: none match any; one is the budget of a pipeline with a budget, else the cap; two are budget, cap."""
    if not numbers:
        return True, pipeline.budget is None and pipeline.cap is None
    if len(numbers) == 2:
        both = _close(pipeline.budget, numbers[0]) and _close(pipeline.cap, numbers[1])
        return both, both
    if pipeline.budget is None:
        return _close(pipeline.cap, numbers[0]), _close(pipeline.cap, numbers[0])
    return _close(pipeline.budget, numbers[0]), _close(pipeline.budget, numbers[0]) and pipeline.cap is None


def find_pipeline(text: str, known: list[Pipeline]) -> Pipeline:
    """The pipeline named `[STRATEGY +] METHOD [@ BUDGET] [@ CAP]` (spaces optional, e.g. `del+rft@0.3`), as
    `Pipeline.label` writes it: one number after '@' is the budget of a masked pipeline, the work cap of one
    without a budget (`retrain @ 0.1`); two are the budget and the cap.

    A part left out matches any value; of several matches, the one that has none of the parts left out wins
    (`rft` names the maskless, uncapped rft when there is one). No match, or several, is a one-line UserError
    listing the pipelines there are.
    """
    known = sorted(known, key=lambda pipeline: pipeline.sort_key)
    listing = ", ".join(pipeline.label for pipeline in known) or "none"
    head, *number_texts = "".join(text.split()).split("@")
    strategy, plus, method = head.rpartition("+")
    if not method or (plus and not strategy) or len(number_texts) > 2:
        raise UserError(f"baseline {text!r}: write it as [STRATEGY +] METHOD [@ BUDGET] [@ CAP], e.g. del + rft @ 0.3 "
                        f"or retrain @ 0.1; pipelines in the report: {listing}")
    numbers = []
    for number_text in number_texts:
        try:
            numbers.append(float(number_text))
        except ValueError:
            numbers.append(float("nan"))
        if not math.isfinite(numbers[-1]):
            raise UserError(f"baseline {text!r}: the budget after '@' must be a number, as must a cap after it, "
                            f"e.g. del + rft @ 0.3 or retrain @ 0.1; pipelines in the report: {listing}")
    matches, exact = [], []
    for pipeline in known:
        point, point_exactly = _operating_point(pipeline, numbers)
        if pipeline.method == method and (not plus or pipeline.strategy == strategy) and point:
            matches.append(pipeline)
            if point_exactly and (plus or pipeline.strategy == "—"):
                exact.append(pipeline)
    if len(matches) > 1:
        if len(exact) == 1:
            return exact[0]
        raise UserError(f"baseline {text!r} is ambiguous: it matches {', '.join(m.label for m in matches)}; "
                        f"name one of them in full ([STRATEGY +] METHOD [@ BUDGET] [@ CAP])")
    if not matches:
        raise UserError(f"baseline {text!r}: no such pipeline in the report; pipelines: {listing}")
    return matches[0]


@dataclass(frozen=True)
class PairedRow:
    """One pipeline against the baseline on one forget set: the differences (pipeline − baseline) of runs
    with the same seed, aggregated as mean ± 95% t-margin (n = pairs with both numbers)."""

    forget_kind: str
    forget_sha256: str
    pipeline: Pipeline
    pairs: int  # runs of the pipeline with a baseline run of the same seed
    unpaired_pipeline: int  # runs of the pipeline without one (or without a seed): left out
    unpaired_baseline: int  # runs of the baseline without a pipeline run of the same seed: left out
    differences: dict[str, Summary]  # PAIRED_KEYS -> Summary of (pipeline − baseline)
    verdicts: dict[str, str]  # PAIRED_KEYS -> BASELINE_BETTER | BASELINE_WORSE | LEVEL | UNDECIDED

    @property
    def left_out(self) -> int:
        return self.unpaired_pipeline + self.unpaired_baseline


def verdict(difference: Summary, higher_is_better: bool) -> str:
    """How the baseline compares when the 95% interval of the mean difference (pipeline − baseline)
    excludes 0: `level` when it does not, `—` with fewer than two pairs (no interval)."""
    if difference.n < 2 or not math.isfinite(difference.mean) or not math.isfinite(difference.margin):
        return UNDECIDED
    if abs(difference.mean) <= difference.margin:
        return LEVEL
    pipeline_better = (difference.mean > 0) == higher_is_better
    return BASELINE_WORSE if pipeline_better else BASELINE_BETTER


def _by_seed(group: Group) -> tuple[dict[int, dict], int]:
    """Runs of a group by seed, and the number of runs without a seed; two runs with one seed are a UserError."""
    runs: dict[int, dict] = {}
    seedless = 0
    for run in group.runs:
        seed = run.get("seed")
        if seed is None:
            seedless += 1
        elif seed in runs:
            raise UserError(f"{pipeline_of(group.key).label} has two runs with seed {seed} on forget set "
                            f"{group.key.forget_sha256[:12]}… (models {runs[seed]['model']['sha256'][:12]}… and "
                            f"{run['model']['sha256'][:12]}…), so the paired comparison cannot tell which to pair; "
                            f"pass the results of only one of them")
        else:
            runs[seed] = run
    return runs, seedless


def paired_difference(group: Group, baseline: Group, name: str) -> Summary:
    """Mean ± 95% t-margin of `name` (a key of `run_values`) of `group`'s runs minus `baseline`'s runs with the same
    seed (n = the pairs where both have the number); `group` and `baseline` are on the same forget set."""
    mine, theirs = _by_seed(group)[0], _by_seed(baseline)[0]
    return _paired_values(mine, theirs, sorted(mine.keys() & theirs.keys()), name)


def _paired_values(mine: dict[int, dict], theirs: dict[int, dict], seeds: list[int], name: str) -> Summary:
    values = []
    for seed in seeds:
        one, other = run_values(mine[seed])[name], run_values(theirs[seed])[name]
        if one is not None and other is not None:
            values.append(one - other)
    return summarize(values)


def paired_comparisons(groups: list[Group], baseline: Pipeline) -> list[PairedRow]:
    """Every other pipeline against `baseline`, per forget set: runs paired on (forget set, seed).

    Differences are pipeline − baseline of `average_gap`, `strong_average_gap` (lower is better: a positive
    difference that excludes 0 means the baseline is better) and ToW (higher is better: a positive
    difference means the baseline is worse). Runs without a partner, or without a seed, are left out and
    counted. Rows are sorted by forget set, then pipeline.
    """
    baselines = {group.key.forget_sha256: group for group in groups if pipeline_of(group.key) == baseline}
    rows = []
    for group in groups:
        pipeline = pipeline_of(group.key)
        if pipeline == baseline:
            continue
        mine, seedless = _by_seed(group)
        base_group = baselines.get(group.key.forget_sha256)
        theirs, base_seedless = _by_seed(base_group) if base_group is not None else ({}, 0)
        common = sorted(mine.keys() & theirs.keys())
        differences = {name: _paired_values(mine, theirs, common, name) for name in PAIRED_KEYS}
        rows.append(PairedRow(
            forget_kind=group.key.forget_kind, forget_sha256=group.key.forget_sha256, pipeline=pipeline,
            pairs=len(common), unpaired_pipeline=len(mine) - len(common) + seedless,
            unpaired_baseline=len(theirs) - len(common) + base_seedless, differences=differences,
            verdicts={name: verdict(differences[name], higher) for name, higher in PAIRED_KEYS.items()}))
    return sorted(rows, key=lambda row: (row.forget_kind, row.forget_sha256, row.pipeline.sort_key))
