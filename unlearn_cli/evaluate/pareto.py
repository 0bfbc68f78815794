"""Cost against quality: the non-dominated pipelines of each forget set, and F*, the smallest work cap at which
retraining from scratch cannot be told apart from the oracle.

Every pipeline with a known cost (mean `cost ×retrain` over its runs: work ÷ the work of retraining on the retain
set with the parent's recipe) is a point per quality: the average gap (lower is better), ToW (Zhao et al. 2024;
higher is better) and, when audit files are given, the forget score of the NeurIPS 2023 unlearning challenge
(higher is better). Pipeline A dominates B on a quality when A's mean cost is at most B's and A is better beyond
chance:
  - gap and ToW: the paired 95% t-interval of A − B over runs with the same forget set and seed excludes 0 in
    A's favour (at least two pairs; a cheaper pipeline that is better on average but whose interval includes 0
    does not dominate);
  - forget score: audits score a pool, not a run, so nothing is paired; A's bootstrap interval (`intervals.forget_score`
    of the audit row) lies wholly above B's; an audit without intervals is a point, and then A's score must be higher.
A pipeline no other dominates is non-dominated on that quality. A pipeline without a known cost is not placed.

F* (per forget set): over the `retrain @ F` pipelines (method `retrain` with a work cap F: training from scratch
on the retain set with the recipe compressed to F), the smallest F whose runs differ from the oracle, per seed, by
a paired 95% t-interval that contains 0 in each of forget, retain and test accuracy and MIA-correctness. The
oracle's numbers are those each run was evaluated against (`oracle.metrics`), else those of the oracle's own
result (method `retrain`, no cap) with the same seed.

Usage:
    scores = audit_forget_scores(audit_documents, groups)   # (forget sha, Pipeline) -> PoolScore
    for front in pareto_fronts(groups, scores): front.points, front.f_star
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from unlearn_cli.evaluate.aggregate import (
    BASELINE_WORSE,
    Group,
    GroupKey,
    Pipeline,
    Summary,
    paired_difference,
    pipeline_of,
    summarize,
    verdict,
)

# qualities of a point -> True when higher is better
QUALITIES = {"average_gap": False, "tow": True, "forget_score": True}
PAIRED_QUALITIES = ("average_gap", "tow")  # per run, so compared paired; the forget score is per pool
F_STAR_METRICS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_correctness")
REFERENCE_METHOD = "retrain"


@dataclass(frozen=True)
class PoolScore:
    """An audit's forget score of the pool of a pipeline's models, with its interval when the audit has one."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def interval(self) -> tuple[float, float]:
        return (self.value, self.value) if self.low is None or self.high is None else (self.low, self.high)


@dataclass
class ParetoPoint:
    group: Group
    cost: Summary  # cost ×retrain over the runs; n = 0: unknown, not placed
    forget_score: PoolScore | None
    front: list[str] = field(default_factory=list)  # QUALITIES on which no placed pipeline dominates it

    @property
    def pipeline(self) -> Pipeline:
        return pipeline_of(self.group.key)

    @property
    def placed(self) -> bool:
        return self.cost.n > 0

    @property
    def reference(self) -> bool:
        """A `retrain @ F` pipeline: the reference curve."""
        return self.pipeline.method == REFERENCE_METHOD and self.pipeline.cap is not None

    def quality(self, name: str) -> Summary | PoolScore | None:
        if name == "forget_score":
            return self.forget_score
        summary = self.group.stats.get(name)
        return summary if summary is not None and summary.n else None


@dataclass(frozen=True)
class CapCheck:
    """`retrain @ cap` against the oracle: mean ± 95% t-margin of the per-seed differences (retrain @ cap − oracle)."""

    cap: float
    differences: dict[str, Summary]  # F_STAR_METRICS -> Summary

    @property
    def indistinguishable(self) -> bool:
        return all(difference.n >= 2 and abs(difference.mean) <= difference.margin
                   for difference in self.differences.values())


@dataclass(frozen=True)
class FStar:
    checks: list[CapCheck]  # by cap

    @property
    def value(self) -> float | None:
        """The smallest cap that is indistinguishable from the oracle, or None."""
        return next((check.cap for check in self.checks if check.indistinguishable), None)

    @property
    def largest(self) -> float | None:
        return self.checks[-1].cap if self.checks else None


@dataclass
class ParetoSet:
    forget_kind: str
    forget_sha256: str
    points: list[ParetoPoint]  # placed by cost, then the unplaced
    f_star: FStar

    @property
    def unplaced(self) -> list[ParetoPoint]:
        return [point for point in self.points if not point.placed]


def _better_pooled(one: PoolScore, other: PoolScore) -> bool:
    """`one`'s interval lies wholly above `other`'s (points: `one` is higher)."""
    return one.interval[0] > other.interval[1]


def dominates(one: ParetoPoint, other: ParetoPoint, quality: str) -> bool:
    """Whether `one` dominates `other` on `quality`: no costlier (means) and better beyond chance (module doc)."""
    if not (one.placed and other.placed) or one.cost.mean > other.cost.mean:
        return False
    if one.quality(quality) is None or other.quality(quality) is None:
        return False
    if quality == "forget_score":
        return _better_pooled(one.forget_score, other.forget_score)
    difference = paired_difference(one.group, other.group, quality)
    return verdict(difference, QUALITIES[quality]) == BASELINE_WORSE  # the baseline (`other`) is worse


def mark_fronts(points: list[ParetoPoint], qualities: tuple[str, ...]) -> None:
    """Set each placed point's `front`: the qualities it has on which no other point dominates it."""
    for point in points:
        point.front = [quality for quality in qualities if point.placed and point.quality(quality) is not None
                       and not any(dominates(other, point, quality) for other in points if other is not point)]


def _oracle_metrics(run: dict, oracle_runs: dict[int, dict]) -> dict | None:
    oracle = run.get("oracle")
    if oracle and isinstance(oracle.get("metrics"), dict):
        return oracle["metrics"]
    partner = oracle_runs.get(run.get("seed"))
    return partner["metrics"] if partner is not None else None


def cap_check(group: Group, oracle_runs: dict[int, dict]) -> CapCheck:
    """`retrain @ F` (`group`) against the oracle, run by run (`oracle_runs`: the oracle's own results by seed)."""
    differences = {}
    for name in F_STAR_METRICS:
        values = []
        for run in group.runs:
            oracle = _oracle_metrics(run, oracle_runs)
            mine, theirs = run["metrics"].get(name), (oracle or {}).get(name)
            if mine is not None and theirs is not None:
                values.append(mine - theirs)
        differences[name] = summarize(values)
    return CapCheck(cap=group.key.cap, differences=differences)


def f_star(groups: list[Group]) -> FStar:
    """F* of one forget set's groups."""
    oracle = next((group for group in groups if group.key.method == REFERENCE_METHOD and group.key.cap is None
                   and group.key.strategy == "—"), None)
    oracle_runs = {run["seed"]: run for run in oracle.runs if run.get("seed") is not None} if oracle else {}
    checks = [cap_check(group, oracle_runs) for group in groups
              if group.key.method == REFERENCE_METHOD and group.key.cap is not None]
    return FStar(sorted(checks, key=lambda check: check.cap))


def _point_order(point: ParetoPoint) -> tuple:
    return (not point.placed, point.cost.mean if point.placed else 0.0, point.pipeline.sort_key)


def pareto_fronts(groups: list[Group], scores: dict[tuple[str, Pipeline], PoolScore] | None = None) -> list[ParetoSet]:
    """One ParetoSet per forget set: every group a point, the fronts marked, F*; `scores` from audit files."""
    scores = scores or {}
    by_forget: dict[str, list[Group]] = {}
    for group in groups:
        by_forget.setdefault(group.key.forget_sha256, []).append(group)
    qualities = PAIRED_QUALITIES + (("forget_score",) if scores else ())
    sets = []
    for forget_sha, members in sorted(by_forget.items(), key=lambda item: (item[1][0].key.forget_kind, item[0])):
        points = [ParetoPoint(group, group.stats["cost_x_retrain"], scores.get((forget_sha, pipeline_of(group.key))))
                  for group in members]
        mark_fronts(points, qualities)
        sets.append(ParetoSet(members[0].key.forget_kind, forget_sha, sorted(points, key=_point_order), f_star(members)))
    return sets


def has_cost(groups: list[Group]) -> bool:
    return any(group.stats["cost_x_retrain"].n for group in groups)


def _interval(row: dict) -> tuple[float | None, float | None]:
    """The audit row's bootstrap interval of the forget score (`intervals.forget_score`, [low, high]) as (low, high);
    (None, None) for an audit written without intervals."""
    intervals = row.get("intervals")
    interval = intervals.get("forget_score") if isinstance(intervals, dict) else None
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(
            isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound) for bound in interval):
        return float(interval[0]), float(interval[1])
    return None, None


def audit_forget_scores(documents: list[dict], groups: list[Group]) -> dict[tuple[str, Pipeline], PoolScore]:
    """(forget set, pipeline) -> the forget score of the audits' pool on the forget set whose models are all
    among the pipeline's results on that forget set; the first audit row wins when several score one pipeline."""
    owner: dict[tuple[str, str], GroupKey] = {}  # (whole forget set sha, model sha) -> the group's key
    for group in groups:
        for run in group.runs:
            owner[(run["forget"]["sha256"], run["model"]["sha256"])] = group.key
    scores: dict[tuple[str, Pipeline], PoolScore] = {}
    for document in documents:
        forget_sha = document["forget"]["sha256"]
        for row in document["rows"]:
            if row["examples"] != "forget" or row["pool"] == "half" or row["forget_score"] is None:
                continue
            models = document["pools"].get(row["pool"], {}).get("models", [])
            keys = {owner.get((forget_sha, model["sha256"])) for model in models}
            if len(keys) == 1 and None not in keys:
                (key,) = keys
                scores.setdefault((key.forget_sha256, pipeline_of(key)), PoolScore(float(row["forget_score"]), *_interval(row)))
    return scores
