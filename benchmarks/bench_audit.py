"""Time the pool metrics of `unlearn audit`, given the models' φ, against a per-example grid search.

64 unlearned + 64 retrained models on 1,000 forget examples (synthetic φ: per example a retrained mean and
spread, the unlearned pool shifted and rescaled by varied amounts, a few pools nearly constant). Our
audit computes, for all examples at once, the exact ε (every threshold that changes a rule's outcome, from
the sorted values), its points, the leave-one-out attack over all pairs of held-out models and both KL
estimates. The straightforward approach the challenge's reference takes scans, example by example, a fixed
grid of 100 thresholds per unit for the single-threshold rules and the interval rules; it is written here
from that description and timed on the first `--grid-examples` examples, then scaled to all (its time per
example does not depend on the others). Both ε are printed side by side: the exact one is never smaller.

Then the metrics of one audit (3 forget-set rows, 4 control rows) as they were, and as they are now: each
row's normalized attack and `--bootstrap` resamples of models and examples, and on the forget-set rows the
metrics on a matched sample (`--matched` examples), resampled with the forget set.

Usage:
    .venv/bin/python benchmarks/bench_audit.py [--models 64] [--examples 1000] [--grid-examples 100] [--threads 2] \
        [--bootstrap 200] [--matched 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unlearn_cli.evaluate.audit import bootstrap, compare_pools
from unlearn_cli.evaluate.epsilon import EPSILON_CAP, INTERVAL_SLACK, PEAKY_RATIO, _rule_epsilon, epsilon_points
from unlearn_cli.evaluate.pool_attacks import likelihood_ratio_attack, standardize

PER_UNIT = 100  # grid thresholds per unit of φ


def synthetic_pools(models: int, examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    center, spread = rng.uniform(-2, 8, examples), rng.uniform(0.3, 2, examples)
    retrained = center + spread * rng.normal(size=(models, examples))
    shift = rng.choice([0, 0.25, 0.5, 1, 2, -1], examples)
    ratio = rng.choice([0.5, 1, 2], examples)
    unlearned = center + spread * (shift + ratio * rng.normal(size=(models, examples)))
    unlearned[:, : examples // 100] = center[: examples // 100] + 1e-4 * rng.normal(size=(models, examples // 100))
    return unlearned, retrained


def grid_epsilon(unlearned: np.ndarray, retrained: np.ndarray) -> float:
    """ε of one example ([N] and [N] φ) by scanning fixed threshold grids, as the challenge's reference does."""
    positive, negative = (retrained, unlearned) if np.median(retrained) > np.median(unlearned) else (unlearned, retrained)
    spread_positive, spread_negative = np.ptp(positive), np.ptp(negative)
    largest, smallest = max(spread_positive, spread_negative), min(spread_positive, spread_negative)
    if largest > 0 and smallest < PEAKY_RATIO * largest:
        return EPSILON_CAP
    low, high = min(positive.min(), negative.min()), max(positive.max(), negative.max())
    thresholds = np.linspace(low, high, max(2, int(np.ceil((high - low) * PER_UNIT))))
    candidates = [_rule_epsilon((negative[:, None] >= thresholds).mean(0), (positive[:, None] < thresholds).mean(0))]
    peaky, other = (negative, positive) if spread_positive >= spread_negative else (positive, negative)
    width = smallest
    right_low, right_high = peaky.min() + width - INTERVAL_SLACK, peaky.max() + INTERVAL_SLACK
    right = np.linspace(right_low, right_high, int(np.ceil((right_high - right_low) * PER_UNIT)))
    offsets = np.linspace(-INTERVAL_SLACK, INTERVAL_SLACK, int(np.ceil(2 * INTERVAL_SLACK * PER_UNIT)))
    for r in right:  # one row of left thresholds per right threshold
        left = r - width + offsets
        inside_peaky = ((left <= peaky[:, None]) & (peaky[:, None] <= r)).mean(0)
        inside_other = ((left <= other[:, None]) & (other[:, None] <= r)).mean(0)
        candidates.append(_rule_epsilon(inside_other, 1 - inside_peaky))
    values = np.concatenate(candidates)
    best = np.nanmax(values) if np.any(~np.isnan(values)) else 0.0
    return float(np.clip(best, 0, EPSILON_CAP))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64, help="models per pool")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--grid-examples", type=int, default=100, help="examples the grid search is timed on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples of the forget-set row (0: skip)")
    parser.add_argument("--matched", type=int, default=None, help="matched-sample examples (default: --examples)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unlearned, retrained = synthetic_pools(args.models, args.examples)
    print(f"{args.models} + {args.models} models, {args.examples:,} forget examples, {args.threads} threads")

    compare_pools(unlearned[:, :10], retrained[:, :10])  # warm-up (imports, allocator)
    started = time.perf_counter()
    ours = compare_pools(unlearned, retrained)
    ours_s = time.perf_counter() - started
    print(f"  audit (exact ε + points + leave-one-out attack + KL, all examples): {ours_s:.2f} s")

    shown = min(args.grid_examples, args.examples)
    started = time.perf_counter()
    grid = np.array([grid_epsilon(unlearned[:, i], retrained[:, i]) for i in range(shown)])
    grid_s = (time.perf_counter() - started) * args.examples / shown
    print(f"  per-example grid search (ε only), timed on {shown} examples, scaled to {args.examples:,}: "
          f"{grid_s:.1f} s")
    print(f"  ratio grid / audit: {grid_s / ours_s:.0f}×")

    exact = ours["epsilon"][:shown]
    print(f"  ε on those {shown} examples: exact ≥ grid everywhere: {bool(np.all(exact >= grid - 1e-6))}; "
          f"equal (1e-6) on {np.mean(np.abs(exact - grid) < 1e-6):.0%}; forget score exact "
          f"{epsilon_points(exact, args.models).mean():.4f} vs grid {epsilon_points(grid, args.models).mean():.4f}")
    if args.bootstrap:
        # the metrics of one audit with --original: 3 forget-set rows (unlearned, original, ceiling) and 4 control
        # rows; before: each row's metrics; now also each row's normalized attack and bootstrap, and on the
        # forget-set rows the matched sample's metrics, bootstrapped with the forget set
        matched = args.matched or args.examples
        matched_unlearned, matched_retrained = synthetic_pools(args.models, matched, seed=1)
        reference_unlearned, reference_retrained = synthetic_pools(args.models, 1000, seed=2)
        started = time.perf_counter()
        for _ in range(7):
            compare_pools(unlearned, retrained)
        before_s = time.perf_counter() - started
        started = time.perf_counter()
        for row in range(7):
            compare_pools(unlearned, retrained)
            likelihood_ratio_attack(standardize(unlearned, reference_unlearned),
                                    standardize(retrained, reference_retrained))
            if row < 3:
                compare_pools(matched_unlearned, matched_retrained)
                bootstrap({"forget": unlearned, "matched": matched_unlearned},
                          {"forget": retrained, "matched": matched_retrained}, args.bootstrap, seed=0)
            else:
                bootstrap({"retain": unlearned}, {"retain": retrained}, args.bootstrap, seed=0)
        after_s = time.perf_counter() - started
        print(f"  an audit's metrics (3 forget-set rows, 4 control rows): before {before_s:.1f} s; with the "
              f"normalized attack, {args.bootstrap} bootstrap resamples and a {matched:,}-example matched sample "
              f"on the forget-set rows {after_s:.1f} s ({after_s / before_s:.0f}×)")

if __name__ == "__main__":
    main()
