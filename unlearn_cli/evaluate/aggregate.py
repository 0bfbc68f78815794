"""Aggregation of evaluation runs over seeds: mean ± 95% confidence margin (Student t).

margin = t_{0.975, n−1} · s / √n with s the sample standard deviation (n − 1 in the denominator);
a single run has margin 0 (shown as "—").

Usage:
    groups = group_runs(runs)            # runs: result objects of `unlearn-results/1` files
    for group in groups: group.key, group.count, group.stats["forget_accuracy"]   # Summary(mean, margin, n)
    oracle_summaries(runs)               # forget sha -> {metric: Summary} over distinct oracles
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


def group_runs(runs: list[dict]) -> list[Group]:
    """Runs grouped by (forget set, strategy, method, budget), one summary per metric; a checkpoint
    evaluated twice on the same forget set counts once."""
    grouped: dict[GroupKey, list[dict]] = {}
    seen: set[tuple[str, str]] = set()
    for run in runs:
        identity = (run["model"]["sha256"], run["forget"]["sha256"])
        if identity in seen:
            continue
        seen.add(identity)
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
