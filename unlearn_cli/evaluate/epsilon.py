"""The forget score of the NeurIPS 2023 Machine Unlearning challenge, from pools of models.

Per forget example, the logit-scaled confidences φ of many unlearned models and of many retrained models
are two samples. The best decision rule separating them (one threshold, or an interval) gives an ε as in
differential privacy; ε falls into buckets worth 1, ½, ¼, … points, and the forget score is the mean
points over the forget set (Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from
the first NeurIPS unlearning competition"; reference implementation google-deepmind/unlearning_evaluation,
metric.py). The reference evaluates each example on a fixed grid of 100 thresholds per unit; here every
threshold that changes a rule's outcome is taken exactly, from the sorted values, for all examples at once.

Usage:
    phi = logit_scaled_confidence(logits, labels)             # [..., C], [...] -> [...], float64
    eps = epsilons(unlearned_phi, retrained_phi)              # [N_u, E], [N_r, E] -> [E]
    points = epsilon_points(eps, num_models=32)               # [E], 1, ½, ¼, … or 0
    score = forget_score(unlearned_phi, retrained_phi)        # mean points
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5  # the δ of (ε, δ): a rule's false-positive and false-negative rates are compared to 1 − δ
EPSILON_CAP = 50.0  # ε of perfectly separated samples, and the upper clip
PEAKY_RATIO = 0.01  # a pool whose spread is below this share of the other's scores the cap
BUCKET_WIDTH = 0.5  # ε per halving of the points
INTERVAL_SLACK = 2.0  # interval rules: widths within ± this of the peakier sample's spread, ending near it


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """φ = log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j, in float64; finite for logits of any finite size.

    Args:
        logits: [..., C] with C ≥ 2.
        labels: [...] class indices.
    """
    import torch  # here, not at the top: `report` and `audit`'s tables use this module's numbers without torch

    z = logits.to(torch.float64)
    labels = labels.to(torch.long).unsqueeze(-1)
    correct = z.gather(-1, labels).squeeze(-1)
    others = z.scatter(-1, labels, -math.inf)
    return correct - torch.logsumexp(others, dim=-1)


def _rule_epsilon(fpr: np.ndarray, fnr: np.ndarray) -> np.ndarray:
    """ε of each decision rule from its rates; NaN for rules that are discarded.

    Both rates 0 (perfect separation) is ∞. Exactly one rate 0 is discarded (too few samples to trust it).
    Otherwise ε = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), at least 0; a term whose
    log(1 − δ − rate) is undefined does not count.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(1 - DELTA - fpr > 0, np.log(np.maximum(1 - DELTA - fpr, 1e-300)) - np.log(fnr), -np.inf)
        second = np.where(1 - DELTA - fnr > 0, np.log(np.maximum(1 - DELTA - fnr, 1e-300)) - np.log(fpr), -np.inf)
    best = np.maximum(first, second)
    eps = np.where(np.isneginf(best), np.nan, np.maximum(best, 0.0))
    eps = np.where((fpr == 0) != (fnr == 0), np.nan, eps)
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def _epsilon_table(num_positive: int, num_negative: int) -> np.ndarray:
    """ε of a rule by its counts: [false positives 0…N_neg, false negatives 0…N_pos]; −∞ where discarded."""
    false_positives = np.arange(num_negative + 1)[:, None] / num_negative
    false_negatives = np.arange(num_positive + 1)[None, :] / num_positive
    eps = _rule_epsilon(*np.broadcast_arrays(false_positives, false_negatives))
    return np.where(np.isnan(eps), -np.inf, eps)


def _sorted_pools(first: np.ndarray, second: np.ndarray, first_is_target: np.ndarray):
    """Both samples of every example in ascending order, with which values belong to the target pool.

    Returns values [E, M] sorted, is_target [E, M] (1 for the target pool's values), M = N_first + N_second.
    """
    values = np.concatenate([first, second], axis=0).T  # [E, M]
    owner = np.concatenate([np.ones(first.shape[0], dtype=np.int32), np.zeros(second.shape[0], dtype=np.int32)])
    is_target = np.where(first_is_target[:, None], owner[None, :], 1 - owner[None, :])
    order = np.argsort(values, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(is_target, order, axis=1)


def _threshold_epsilon(values: np.ndarray, is_positive: np.ndarray, tables: np.ndarray, which: np.ndarray,
                       num_positive: np.ndarray) -> np.ndarray:
    """Best ε per example over the rules "positive when φ ≥ t", t at each distinct sorted value. -> [E]

    tables[which[e]] is example e's ε table (`_epsilon_table`); num_positive: [E, 1] its positive pool's size.
    """
    at_or_above = np.cumsum(is_positive[:, ::-1], axis=1)[:, ::-1]  # positives from position k up [E, M]
    count = np.arange(values.shape[1], 0, -1)[None, :]  # values from position k up
    eps = tables[which[:, None], count - at_or_above, num_positive - at_or_above]
    first_of_ties = np.ones_like(values, dtype=bool)
    first_of_ties[:, 1:] = values[:, 1:] > values[:, :-1]  # t in (v_{k-1}, v_k] selects positions k and up
    return np.where(first_of_ties, eps, -np.inf).max(axis=1)


def _interval_epsilon(values: np.ndarray, is_peaky: np.ndarray, peaky_low: np.ndarray, peaky_high: np.ndarray,
                      width: np.ndarray, tables: np.ndarray, which: np.ndarray, num_peaky: np.ndarray) -> np.ndarray:
    """Best ε per example over the rules "the peakier pool when l ≤ φ ≤ r". -> [E]

    The reference's family: r from (peaky min + w − 2) to (peaky max + 2) and r − l within w ± 2, w the
    peakier sample's spread. Each rule selects a run i..j of the sorted values; a run is a rule of the family
    when some l in (v_{i−1}, v_i] and r in [v_j, v_{j+1}) satisfy those bounds.
    """
    count, size = values.shape
    first, last = np.triu_indices(size)  # every run i..j, i ≤ j [P]
    prefix = np.concatenate([np.zeros((count, 1), dtype=np.int32), np.cumsum(is_peaky, axis=1, dtype=np.int32)],
                            axis=1)  # [E, M + 1]
    inside_peaky = prefix[:, last + 1] - prefix[:, first]  # [E, P]
    inside_other = (last - first + 1)[None, :] - inside_peaky
    padded = np.concatenate([np.full((count, 1), -np.inf), values, np.full((count, 1), np.inf)], axis=1)
    before, start, end, after = padded[:, first], padded[:, first + 1], padded[:, last + 1], padded[:, last + 2]
    right_low, right_high = (peaky_low + width - INTERVAL_SLACK)[:, None], (peaky_high + INTERVAL_SLACK)[:, None]
    r_low, r_high = np.maximum(end, right_low), np.minimum(after, right_high)
    with np.errstate(invalid="ignore"):  # inf − inf where a run starts at the first value: no bound there
        realizable = ((before < start) & (r_low < after) & (r_low <= right_high)
                      & (r_low - start <= width[:, None] + INTERVAL_SLACK)
                      & ~(r_high - before <= width[:, None] - INTERVAL_SLACK))
    eps = tables[which[:, None], inside_other, num_peaky - inside_peaky]
    return np.where(realizable, eps, -np.inf).max(axis=1)


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, chunk_elements: int = 4_000_000) -> np.ndarray:
    """Per-example ε separating the unlearned and retrained φ-samples, in [0, EPSILON_CAP]. -> [E]

    Args:
        unlearned: [N_u, E] φ of each unlearned model on each example.
        retrained: [N_r, E] φ of each retrained model (N_u, N_r ≥ 2).
        chunk_elements: bound on the rule-by-example arrays built at once (memory).

    The positive class of the threshold rules is the pool with the larger median (the unlearned one on a
    tie); that of the interval rules is the peakier pool (smaller spread), as in the reference. A pool whose
    spread is below 1% of the other's scores the cap; an example where no rule survives the discarding
    (identical samples) scores 0.
    """
    unlearned, retrained = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    examples = unlearned.shape[1]
    unlearned_spread, retrained_spread = np.ptp(unlearned, axis=0), np.ptp(retrained, axis=0)
    largest = np.maximum(unlearned_spread, retrained_spread)
    smallest = np.minimum(unlearned_spread, retrained_spread)
    too_peaky = (largest > 0) & (smallest < PEAKY_RATIO * largest)

    retrained_above = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    # the interval rules' positive pool: the peakier one; on equal spreads the one with the smaller median
    retrained_peakier = (retrained_spread < unlearned_spread) | ((retrained_spread == unlearned_spread)
                                                                  & ~retrained_above)
    sizes = np.array([unlearned.shape[0], retrained.shape[0]])  # indexed by "is the retrained pool"
    # ε by (false positives, false negatives) with the retrained pool negative (0) or positive (1)
    largest_count = sizes.max()
    tables = np.full((2, largest_count + 1, largest_count + 1), -np.inf)
    tables[0, : sizes[1] + 1, : sizes[0] + 1] = _epsilon_table(sizes[0], sizes[1])
    tables[1, : sizes[0] + 1, : sizes[1] + 1] = _epsilon_table(sizes[1], sizes[0])
    size = sizes.sum()
    step = max(1, chunk_elements // (size * (size + 1) // 2))
    result = np.empty(examples)
    for begin in range(0, examples, step):
        part = slice(begin, min(examples, begin + step))
        u, r = unlearned[:, part], retrained[:, part]
        above, peakier = retrained_above[part].astype(int), retrained_peakier[part].astype(int)
        values, is_positive = _sorted_pools(r, u, retrained_above[part])
        by_threshold = _threshold_epsilon(values, is_positive, tables, above, sizes[above][:, None])
        values, is_peaky = _sorted_pools(r, u, retrained_peakier[part])
        by_interval = _interval_epsilon(
            values, is_peaky, np.where(peakier, r.min(axis=0), u.min(axis=0)),
            np.where(peakier, r.max(axis=0), u.max(axis=0)), smallest[part], tables, peakier,
            sizes[peakier][:, None])
        result[part] = np.maximum(by_threshold, by_interval)
    result = np.where(np.isneginf(result), 0.0, result)  # no rule survived: nothing tells the pools apart
    return np.clip(np.where(too_peaky, EPSILON_CAP, result), 0.0, EPSILON_CAP)


def epsilon_resolution(num_models: int) -> int:
    """⌈ln(N − 1)⌉: the largest ε that N models per pool can resolve; ε at or beyond it earns no points."""
    return math.ceil(math.log(num_models - 1)) if num_models > 2 else 0


def bucket_table(num_models: int) -> list[tuple[float, float, float]]:
    """(from ε, to ε, points) of every bucket that earns points: [0, 0.5) 1, [0.5, 1) ½, … up to ⌈ln(N − 1)⌉."""
    buckets = int(round(epsilon_resolution(num_models) / BUCKET_WIDTH))
    return [(k * BUCKET_WIDTH, (k + 1) * BUCKET_WIDTH, 0.5**k) for k in range(buckets)]


def epsilon_points(eps: np.ndarray, num_models: int) -> np.ndarray:
    """Points of each ε: 2^−k in bucket k = ⌊ε / 0.5⌋ below ⌈ln(N − 1)⌉, else 0. -> same shape as eps"""
    eps = np.asarray(eps, dtype=np.float64)
    bucket = np.floor(eps / BUCKET_WIDTH)
    earns = eps < epsilon_resolution(num_models)
    return np.where(earns, 0.5 ** np.where(earns, bucket, 0), 0.0)


def forget_score(unlearned: np.ndarray, retrained: np.ndarray) -> float:
    """Mean points over the examples of the ε separating [N_u, E] unlearned from [N_r, E] retrained φ.

    The resolution uses the smaller pool (the reference assumes pools of equal size).
    """
    eps = epsilons(unlearned, retrained)
    return float(epsilon_points(eps, min(len(unlearned), len(retrained))).mean())


def final_score(score: float, retain_accuracy: tuple[float, float], test_accuracy: tuple[float, float]) -> float:
    """The challenge's final score: forget score × RA_u / RA_r × TA_u / TA_r ((unlearned, retrained) means)."""
    (retain_u, retain_r), (test_u, test_r) = retain_accuracy, test_accuracy
    if retain_r <= 0 or test_r <= 0:
        return float("nan")
    return score * (retain_u / retain_r) * (test_u / test_r)
