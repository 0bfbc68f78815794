"""Audit of two pools of models on a set of examples: every per-example distinguisher, their summary, and
bootstrap intervals of the summary.

Usage:
    per_example = compare_pools(unlearned_phi, retrained_phi)   # [N_u, E], [N_r, E] -> dict of [E] arrays
    summary = summarize(per_example, num_models=min(N_u, N_r))  # forget score, attack, KL: plain numbers
    first, second = halves(keys)                                # positions of the retrained pool's halves
    draws = bootstrap({"forget": u_f, "matched": u_m}, {"forget": r_f, "matched": r_m}, resamples=200, seed=0)
    interval = percentile_interval(draws["forget"]["forget_score"], score)     # [low, high], 95%
    specific = excess(headline(summary), headline(matched_summary), draws)   # F minus the matched sample
    scaled = normalized_score((score, draws), (original_score, its_draws), (ceiling_score, its_draws))
"""

from __future__ import annotations

import numpy as np

from unlearn_cli.evaluate.epsilon import EPSILON_CAP, bucket_table, epsilon_points, epsilon_resolution, epsilons
from unlearn_cli.evaluate.pool_attacks import binned_kl, gaussian_kl, likelihood_ratio_attack

PER_EXAMPLE_KEYS = ("epsilon", "points", "attack_accuracy", "attack_auc", "kl_gaussian", "kl_binned")
# the summary numbers the bootstrap resamples (KL: the mean of the Gaussian KL over the examples)
BOOTSTRAPPED = ("forget_score", "attack_accuracy", "attack_auc", "kl_gaussian_mean")
INTERVAL_LEVEL = 0.95  # of the percentile intervals
BOOTSTRAP_COLUMNS = 50_000  # (replicate, example) columns scored at once: bounds memory, amortizes the calls


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


def headline(summary: dict) -> dict[str, float]:
    """The BOOTSTRAPPED numbers of a `summarize` result."""
    return {"forget_score": summary["forget_score"], "attack_accuracy": summary["attack_accuracy"],
            "attack_auc": summary["attack_auc"], "kl_gaussian_mean": summary["kl_gaussian"]["mean"]}


def _replicate_sums(first: np.ndarray, second: np.ndarray, copies: tuple[np.ndarray, np.ndarray], num_models: int,
                    weights: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """Σ over each replicate's columns of weight × per-example number; replicates start at `starts`. -> [B']"""
    eps = epsilons(first, second)
    attack = likelihood_ratio_attack(first, second, copies=copies)
    per_example = {"forget_score": epsilon_points(eps, num_models), "attack_accuracy": attack["accuracy"],
                   "attack_auc": attack["auc"], "kl_gaussian_mean": gaussian_kl(second, first)}
    return {key: np.add.reduceat(values * weights, starts) for key, values in per_example.items()}


def bootstrap(first: dict[str, np.ndarray], second: dict[str, np.ndarray], resamples: int,
              seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Two-level nonparametric bootstrap of the BOOTSTRAPPED numbers of every part. -> part -> number -> [B]

    Each replicate draws, with replacement, as many models from each pool as it has, and for each part as
    many examples as it has, and recomputes the numbers on what it drew (Efron & Tibshirani 1993, "An
    introduction to the bootstrap", ch. 6 and 8; resampling both levels of a two-level design, as Davison &
    Hinkley 1997, "Bootstrap methods and their application", §3.8). Models and examples are both random
    here: another pool of seeds, or another forget set of the same kind, would give other numbers. One model
    draw serves every part of a replicate, so differences between parts (the F-specific excess) are paired.
    The ε scale stays that of the pools' sizes (a drawn pool has as many models, some repeated). Only the
    distinct examples of a draw are scored (about 63%), weighted by how often they were drawn. The attack
    leaves a held-out model out of its pool's fit with all its copies (else a copy left in the fit would
    make every drawn pool look separable).

    Args:
        first: part -> [N_1, E_part] φ of the pool under audit.
        second: part -> [N_2, E_part] φ of the reference pool, the same parts.
        resamples: B ≥ 1.
        seed: of the generator (numpy's PCG64); the same seed and inputs give the same draws.
    """
    generator = np.random.default_rng(seed)
    count_first, count_second = len(next(iter(first.values()))), len(next(iter(second.values())))
    num_models = min(count_first, count_second)
    models = [(generator.integers(0, count_first, count_first), generator.integers(0, count_second, count_second))
              for _ in range(resamples)]
    # how many rows of its drawn pool hold each row's model: the attack leaves all copies out together
    multiplicity = [tuple(np.bincount(drawn, minlength=len(drawn))[drawn].astype(np.float64) for drawn in pair)
                    for pair in models]
    draws = {}
    for part, values in first.items():
        examples = values.shape[1]
        chosen = [np.unique(generator.integers(0, examples, examples), return_counts=True) for _ in range(resamples)]
        totals = {key: np.empty(resamples) for key in BOOTSTRAPPED}
        begin = 0
        while begin < resamples:
            end, columns = begin + 1, len(chosen[begin][0])
            while end < resamples and columns + len(chosen[end][0]) <= BOOTSTRAP_COLUMNS:
                columns += len(chosen[end][0])
                end += 1
            batch = range(begin, end)
            sampled_first = np.concatenate([values[np.ix_(models[b][0], chosen[b][0])] for b in batch], axis=1)
            sampled_second = np.concatenate([second[part][np.ix_(models[b][1], chosen[b][0])] for b in batch], axis=1)
            copies = tuple(np.concatenate([np.broadcast_to(multiplicity[b][side][:, None],
                                                           (len(models[b][side]), len(chosen[b][0])))
                                           for b in batch], axis=1) for side in (0, 1))
            weights = np.concatenate([chosen[b][1] for b in batch]).astype(np.float64)
            starts = np.cumsum([0] + [len(chosen[b][0]) for b in batch])[:-1]
            for key, sums in _replicate_sums(sampled_first, sampled_second, copies, num_models, weights,
                                             starts).items():
                totals[key][begin:end] = sums / examples
            begin = end
        draws[part] = totals
    return draws


def percentile_interval(replicates: np.ndarray, estimate: float, level: float = INTERVAL_LEVEL,
                        bounds: tuple[float, float] = (-np.inf, np.inf)) -> list[float]:
    """[low, high]: the (1 − level)/2 and (1 + level)/2 quantiles of the bootstrap replicates (the percentile
    interval, Efron & Tibshirani 1993, §13.3), shifted by the bootstrap's median bias, median(replicates) −
    estimate (the bias estimate of ibid. §10.2, with the median for the mean: replicates of a KL are heavy-tailed).

    The shift matters here: a drawn pool repeats some models, which makes it look more separable (ε) and
    narrower (a KL's fitted variance), so the replicates sit off the estimate by an amount that comes from
    the resampling, not from the pools; the spread of the replicates is what estimates the sampling error.
    Shifted so, the interval always holds the estimate. The interval is clipped to `bounds`, the range the number can take
    (0 to 1 for a score, at least 0 for a KL). An estimate that is not finite gives [nan, nan].
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    if not np.isfinite(estimate) or not np.all(np.isfinite(replicates)):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    low, high = np.clip(np.percentile(replicates, [tail, 100 - tail]) - (np.median(replicates) - estimate), *bounds)
    return [float(low), float(high)]


# the range each BOOTSTRAPPED number can take, and that of a difference of two of them (the excess)
RANGES = {"forget_score": (0.0, 1.0), "attack_accuracy": (0.0, 1.0), "attack_auc": (0.0, 1.0),
          "kl_gaussian_mean": (0.0, np.inf)}
DIFFERENCE_RANGES = {"forget_score": (-1.0, 1.0), "attack_accuracy": (-1.0, 1.0), "attack_auc": (-1.0, 1.0),
                     "kl_gaussian_mean": (-np.inf, np.inf)}


def excess(forget: dict[str, float], matched: dict[str, float], draws: dict | None) -> dict[str, dict]:
    """The F-specific excess of each BOOTSTRAPPED number: its value on the forget set minus its value on a matched
    unseen sample (test examples with the forget set's class mix), scored with the same models.

    A pool that differs from the retrained one everywhere (another temperature, a lost margin) differs as
    much on unseen examples as on F: its excess is near 0. What remains is specific to F, e.g. memorization.
    The interval pairs each replicate's two parts (one model draw for both, `bootstrap`).

    Args:
        forget, matched: `headline` numbers of the comparison on F and on the matched sample.
        draws: `bootstrap` replicates with parts "forget" and "matched", or None for no intervals.
    Returns:
        number -> {"forget", "matched", "excess", "interval": [low, high] or None}
    """
    result = {}
    for key in BOOTSTRAPPED:
        difference = forget[key] - matched[key]
        interval = None if draws is None else percentile_interval(
            draws["forget"][key] - draws["matched"][key], difference, bounds=DIFFERENCE_RANGES[key])
        result[key] = {"forget": forget[key], "matched": matched[key], "excess": difference, "interval": interval}
    return result


def normalized_score(pool: tuple[float, np.ndarray | None], original: tuple[float, np.ndarray | None],
                     ceiling: tuple[float, np.ndarray | None]) -> dict | None:
    """The forget score on the scale from no unlearning (0) to perfect unlearning (1):
    (score − original's) / (ceiling's − original's), with the interval of that ratio over the bootstrap
    replicates (the rows' replicates, drawn with one seed, pair up replicate by replicate).

    A forget score reads differently on every setting: how close an untouched original already is to the
    retrained pool depends on how much the models memorize. The normalized score says which share of that
    distance a pool closed. Below 0: further from retraining than the original; above 1: closer than a pool
    of other oracles. None where the ceiling is not above the original (nothing to close: the scale is undefined).

    Args:
        pool, original, ceiling: (forget score, its bootstrap replicates [B] or None) of the pool under audit,
            of the originals and of the ceiling (an independent oracle pool, or the retrained pool's halves).
    Returns:
        {"value", "interval": [low, high] or None}, or None.
    """
    (score, draws), (low, low_draws), (high, high_draws) = pool, original, ceiling
    if not (np.isfinite(score) and np.isfinite(low) and np.isfinite(high)) or high <= low:
        return None
    value = (score - low) / (high - low)
    interval = None
    if draws is not None and low_draws is not None and high_draws is not None:
        span = high_draws - low_draws
        with np.errstate(divide="ignore", invalid="ignore"):
            replicates = np.where(span > 0, (draws - low_draws) / span, np.nan)
        replicates = replicates[np.isfinite(replicates)]
        if len(replicates) >= 0.9 * len(draws):  # a scale that collapses in many draws has no interval
            interval = percentile_interval(replicates, value)
    return {"value": float(value), "interval": interval}
