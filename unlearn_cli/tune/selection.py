"""A choice made on K validation forget sets: each candidate is scored on every set, its score is the mean over the
sets, and its standard error, for the one-standard-error rule, is that of the mean; the choice is stable when
each set alone would have made it too.

One forget set is one draw: settings that win on it may win by its luck. Scoring on K draws of the same split
(tune/reference.py `draw_validation_sets`) averages that luck out, and asking each set alone which candidate it
would choose shows how much of it there was.

The standard error of the mean Ō = (1/K) Σ O_k of the K objectives, from a one-way random-effects model
O_k = μ + b_k + e_k (b_k the set's own deviation, variance τ²; e_k the sampling error of its examples, variance
s_k², the set's bootstrap standard error squared):

    Var(Ō) = τ²/K + Σ s_k²/K²
    τ² estimated by moments as max(0, v − mean_k s_k²), v = Σ (O_k − Ō)²/(K − 1) the spread between the sets
    (DerSimonian & Laird 1986, "Meta-analysis in clinical trials", unweighted), so

    SE(Ō) = √(max(v, mean_k s_k²) / K)          (K = 1: s_1, the set's own bootstrap standard error)

Usage:
    score = mean_score([score_on_set_1, score_on_set_2, score_on_set_3])   # {"objective": mean, …, "objective_se"}
    stability = selection_stability(ranked, chosen, cost)                   # {"same_choice": [...], "share": …}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

from unlearn_cli.tune.search import Trial, cheapest_within_standard_error, rank_candidates

STANDARD_ERROR = "objective_se"


def standard_error_of_mean(objectives: Sequence[float], errors: Sequence[float | None]) -> float:
    """SE of the mean of `objectives` (one per set), each with its own bootstrap standard error in `errors`:
    √(max(spread between the sets, mean of the squared errors) / K); an error that is None or NaN is left out of
    the mean, and K = 1 gives that set's error as it is."""
    count = len(objectives)
    if count == 1:
        return math.nan if errors[0] is None else errors[0]
    within = [error * error for error in errors if error is not None and math.isfinite(error)]
    mean = sum(objectives) / count
    between = sum((value - mean) ** 2 for value in objectives) / (count - 1)
    return math.sqrt(max(between, sum(within) / len(within) if within else 0.0) / count)


def mean_score(scores: list[dict]) -> dict:
    """One score from each set's: every number the mean over the sets that have it, in the first set's order, and
    `objective_se` the standard error of the mean objective (`standard_error_of_mean`); one set's score as it is."""
    if len(scores) == 1:
        return dict(scores[0])
    keys = list(dict.fromkeys(key for score in scores for key in score))
    merged = {}
    for key in keys:
        values = [score[key] for score in scores if key in score]
        merged[key] = sum(values) / len(values)
    if STANDARD_ERROR in merged:
        merged[STANDARD_ERROR] = standard_error_of_mean([score["objective"] for score in scores],
                                                        [score.get(STANDARD_ERROR) for score in scores])
    return merged


def set_objectives(trial: Trial) -> list[float]:
    """The candidate's objective on each set (inf where it failed), in the sets' order."""
    return [dataclasses.replace(trial, score=score).objective for score in trial.set_scores]


def selection_stability(ranked: list[Trial], chosen: Trial, cost: Callable[[Trial], float]) -> dict | None:
    """For each set, whether choosing by that set's scores alone (the same ranking and one-standard-error rule,
    `cheapest_within_standard_error`) picks `chosen`'s candidate, and the share of sets that do; None when the
    trials hold no per-set scores (one set)."""
    sets = len(chosen.set_scores)
    if sets < 2:
        return None
    same = []
    for position in range(sets):
        alone = [dataclasses.replace(trial, score=trial.set_scores[position]) if trial.set_scores else trial
                 for trial in ranked]
        pick = cheapest_within_standard_error(rank_candidates(alone), cost)
        same.append(pick is not None and pick.candidate.index == chosen.candidate.index)
    return {"same_choice": same, "share": sum(same) / sets}
