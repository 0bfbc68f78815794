"""Audit of two pools of models on a set of examples: every per-example distinguisher, and their summary.

Usage:
    per_example = compare_pools(unlearned_phi, retrained_phi)   # [N_u, E], [N_r, E] -> dict of [E] arrays
    summary = summarize(per_example, num_models=min(N_u, N_r))  # forget score, attack, KL: plain numbers
    first, second = halves(keys)                                # positions of the retrained pool's halves
"""

from __future__ import annotations

import numpy as np

from unlearn_cli.evaluate.epsilon import EPSILON_CAP, bucket_table, epsilon_points, epsilon_resolution, epsilons
from unlearn_cli.evaluate.pool_attacks import binned_kl, gaussian_kl, likelihood_ratio_attack

PER_EXAMPLE_KEYS = ("epsilon", "points", "attack_accuracy", "attack_auc", "kl_gaussian", "kl_binned")


def compare_pools(first: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    """Per example: ε, its points, the attack's balanced accuracy and AUC, and KL(second ‖ first) both ways of
    estimating it.

    Args:
        first: [N_1, E] φ of the pool under audit (unlearned, original, or half of the retrained pool).
        second: [N_2, E] φ of the retrained pool (the reference).
    """
    eps = epsilons(first, second)
    attack = likelihood_ratio_attack(first, second)
    return {"epsilon": eps, "points": epsilon_points(eps, min(len(first), len(second))),
            "attack_accuracy": attack["accuracy"], "attack_auc": attack["auc"],
            "kl_gaussian": gaussian_kl(second, first), "kl_binned": binned_kl(second, first)}


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "p95": float(np.percentile(values, 95))}


def summarize(per_example: dict[str, np.ndarray], num_models: int) -> dict:
    """The aggregates of `compare_pools`' arrays: forget score (mean points), mean attack accuracy and AUC, KL
    mean and 95th percentile, and how ε is spread (with the bucket table for `num_models` per pool)."""
    eps = per_example["epsilon"]
    return {
        "forget_score": float(per_example["points"].mean()),
        "attack_accuracy": float(per_example["attack_accuracy"].mean()),
        "attack_auc": float(per_example["attack_auc"].mean()),
        "kl_gaussian": _spread(per_example["kl_gaussian"]),
        "kl_binned": _spread(per_example["kl_binned"]),
        "epsilon": {"mean": float(eps.mean()), "median": float(np.median(eps)),
                    "share_at_cap": float((eps >= EPSILON_CAP).mean())},
        "resolution": epsilon_resolution(num_models),
        "buckets": [list(bucket) for bucket in bucket_table(num_models)],
    }


def halves(order_keys: list) -> tuple[list[int], list[int]]:
    """A pool's two halves as positions: alternate positions once sorted by `order_keys` (e.g. each model's
    (seed, file hash)), so the same models land in the same half whatever order they came in."""
    order = sorted(range(len(order_keys)), key=lambda index: order_keys[index])
    return order[0::2], order[1::2]
