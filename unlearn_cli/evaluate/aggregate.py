"""Aggregation of evaluation runs over seeds: mean ± 95% confidence margin (Student t).

margin = t_{0.975, n−1} · s / √n with s the sample standard deviation (n − 1 in the denominator);
a single run has margin 0 (shown as "—").

The same checkpoint evaluated more than once on the same forget set (same `model.sha256` and
`forget.sha256`) is one run: `merge_evaluations` keeps the most complete record (the oracle comparison
of one and the parameters-changed measurement of another are combined), and refuses records whose
numbers disagree.

Usage:
    runs = merge_evaluations([("a.json", run), ("b.json", run), ...])   # (results file, result object) pairs
    groups = group_runs(runs)            # runs: result objects of `unlearn-results/1` files
    for group in groups: group.key, group.count, group.stats["forget_accuracy"]   # Summary(mean, margin, n)
    oracle_summaries(runs)               # forget sha -> {metric: Summary} over distinct oracles
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.metrics import metric_keys

SUMMARY_KEYS = ("average_gap", "strong_average_gap", "fraction_changed", "wall_time_s")


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

    @property
    def sort_key(self) -> tuple:
        return (self.forget_kind, self.forget_sha256, self.strategy, self.method,
                -1.0 if self.budget is None else self.budget)


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


def run_values(run: dict) -> dict[str, float | None]:
    """The numbers of one result object that are aggregated: every metric plus the summary scores."""
    values = {key: run["metrics"].get(key) for key in metric_keys()}
    values.update({key: run.get(key) for key in SUMMARY_KEYS})
    return values


def key_of(run: dict) -> GroupKey:
    return GroupKey(forget_kind=run["forget"]["kind"] or "indices", forget_sha256=run["forget"]["sha256"],
                    strategy=run["strategy"] or "—", method=run["method"] or "—", budget=run["budget"])


# Parts of a result object that one evaluation may have measured and another not: (present when this field
# is not null, the fields that travel together, the fields that must agree where both records have the part).
OPTIONAL_PARTS = (
    ("oracle", ("oracle", "gaps", "average_gap", "strong_average_gap", "allow_mismatch"),
     ("oracle.sha256", "oracle.metrics", "gaps", "average_gap", "strong_average_gap")),
    ("fraction_changed", ("parent", "fraction_changed"), ("parent.sha256", "fraction_changed")),
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
        merged.setdefault((run["model"]["sha256"], run["forget"]["sha256"]), []).append((source, run))
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
    """Runs grouped by (forget set, strategy, method, budget), one summary per metric; a checkpoint
    evaluated more than once on the same forget set counts once (see merge_evaluations)."""
    grouped: dict[GroupKey, list[dict]] = {}
    for run in merge_evaluations((f"run {position}", run) for position, run in enumerate(runs)):
        grouped.setdefault(key_of(run), []).append(run)
    groups = []
    for key, members in grouped.items():
        columns = [run_values(run) for run in members]
        stats_ = {name: summarize([column[name] for column in columns]) for name in columns[0]}
        groups.append(Group(key=key, runs=members, stats=stats_))
    return sorted(groups, key=lambda group: group.key.sort_key)


def oracle_summaries(runs: list[dict]) -> dict[str, dict[str, Summary]]:
    """Per forget set (sha256): each metric of the oracle, over the distinct oracle checkpoints used."""
    oracles: dict[str, dict[str, dict]] = {}
    for run in runs:
        oracle = run.get("oracle")
        if oracle:
            oracles.setdefault(run["forget"]["sha256"], {})[oracle["sha256"]] = oracle["metrics"]
    return {forget: {key: summarize([metrics.get(key) for metrics in by_sha.values()]) for key in metric_keys()}
            for forget, by_sha in oracles.items()}
