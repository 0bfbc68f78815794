"""Memorization of training examples: the reference estimate over a pool of models each trained on part of the
data (Feldman & Zhang 2020), the proxy `train` records (one minus the training-time confidence; Jiang et al. 2021,
Zhao et al. 2024), and rank correlations to compare them (docs/memorization.md).

Usage:
    confidence = label_probability(logits, labels)                 # [N] softmax probability of the label
    estimate = memorization_estimate(confidence, membership)       # [M, N], [M, N] bool -> [N], NaN: a side empty
    correct = memorization_estimate(correctness, membership)       # the same on 0/1 correctness
    proxy = memorization_proxy(checkpoint.training_confidence)     # [N] 1 − training-time confidence
    rho, examples = rank_correlation(proxy, estimate)              # Spearman over examples scored by both
    halves = split_half_reliability(confidence, membership)        # the estimate's own reliability
"""

from __future__ import annotations

import math

import numpy as np
import torch


def label_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each example's label: logits [N, C], labels [N] -> float64 [N]."""
    return torch.softmax(logits.double(), dim=1).gather(1, labels.long()[:, None]).squeeze(1)


def memorization_estimate(values: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """mem(i) = mean of values[:, i] over the models that trained on example i − mean over those that did not.

    Feldman & Zhang 2020 ("What neural networks memorize and why: discovering the long tail via influence
    estimation", estimator of §2.1 with models trained on random subsets): with `values` the confidence (softmax
    probability of the label) it is their influence estimate on the confidence, with 0/1 correctness Feldman's
    memorization score mem(A, S, i) = P[h(x_i) = y_i | i ∈ training] − P[h(x_i) = y_i | i ∉ training].

    Args:
        values: [M, N] a number per model and example (confidence or correctness).
        membership: [M, N] bool, True where model m trained on example i.
    Returns:
        float64 [N]; NaN where no model, or every model, trained on the example (one side is empty).
    """
    values, membership = torch.as_tensor(values, dtype=torch.float64), torch.as_tensor(membership, dtype=torch.bool)
    if values.shape != membership.shape or values.dim() != 2:
        raise ValueError(f"values {tuple(values.shape)} and membership {tuple(membership.shape)} must both be [M, N]")
    inside = membership.double()
    count_in, count_out = inside.sum(0), (1 - inside).sum(0)
    mean_in = (values * inside).sum(0) / count_in.clamp(min=1)
    mean_out = (values * (1 - inside)).sum(0) / count_out.clamp(min=1)
    return torch.where((count_in > 0) & (count_out > 0), mean_in - mean_out, torch.nan)


def memorization_proxy(training_confidence: torch.Tensor) -> torch.Tensor:
    """One minus the training-time confidence (`engine.ConfidenceRecord`): float64 [N], high for examples the model
    learned late or never (NaN where it did not train on them)."""
    return 1 - torch.as_tensor(training_confidence, dtype=torch.float64)


def rank_correlation(first, second) -> tuple[float, int]:
    """(Spearman's rank correlation, the number of examples) over the examples where both are finite; ties take
    their mean rank. NaN with fewer than 3 such examples or a constant side."""
    from scipy import stats  # imported on use: scipy's import slows every command's start

    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    both = np.isfinite(first) & np.isfinite(second)
    count = int(both.sum())
    if count < 3 or np.ptp(first[both]) == 0 or np.ptp(second[both]) == 0:
        return float("nan"), count
    return float(stats.spearmanr(first[both], second[both]).statistic), count


def split_half_reliability(values: torch.Tensor, membership: torch.Tensor) -> dict[str, float]:
    """How reproducible the estimate is: the rank correlation of the estimates from the even and the odd models
    (each half its own pool), and that correlation stepped up to the whole pool by the Spearman-Brown formula
    2r / (1 + r) (Spearman 1910; Brown 1910), the reliability of the estimate from all M models."""
    halves = [memorization_estimate(values[start::2], membership[start::2]) for start in (0, 1)]
    rho, count = rank_correlation(*halves)
    stepped = 2 * rho / (1 + rho) if math.isfinite(rho) and rho > -1 else float("nan")
    return {"halves": rho, "spearman_brown": stepped, "examples": count}
