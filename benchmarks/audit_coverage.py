"""How wide the audit's bootstrap intervals are against the spread of the estimates they describe, by simulation.

Independent audits of one population: each trial draws 100 examples (a level per example, a shift of 0.7 on
every other example for the first pool) and two pools of 16 models (a per-model offset shared by all
examples, and noise), computes the audit's numbers and their 95% bootstrap intervals, and the script compares
the intervals' mean width / 3.92 with the standard deviation of the estimates over the trials, and counts how
often an interval holds the estimates' mean. A two-level bootstrap that resamples examples as well as models
counts the within-example noise twice (Davison & Hinkley 1997, §3.8), so the intervals should come out wide.

Usage:
    .venv/bin/python benchmarks/audit_coverage.py [--trials 40] [--resamples 100]
"""

from __future__ import annotations

import argparse

import numpy as np

from unlearn_cli.evaluate.audit import RANGES, bootstrap, compare_pools, headline, percentile_interval, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--resamples", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    levels = 2 * rng.normal(size=100_000)

    def pool(models: int, examples: np.ndarray, shift: float) -> np.ndarray:  # [models, E]
        return (levels[examples] + shift * (examples % 2) + 0.3 * rng.normal(size=(models, 1))
                + rng.normal(size=(models, len(examples))))

    estimates, intervals = [], []
    for trial in range(args.trials):
        examples = rng.integers(0, len(levels), 100)
        first, second = pool(16, examples, 0.7), pool(16, examples, 0.0)
        numbers = headline(summarize(compare_pools(first, second), 16))
        draws = bootstrap({"forget": first}, {"forget": second}, args.resamples, seed=trial)["forget"]
        estimates.append(numbers)
        intervals.append({key: percentile_interval(draws[key], numbers[key], bounds=RANGES[key]) for key in numbers})
    print(f"{args.trials} audits of 16 + 16 models on 100 examples, {args.resamples} resamples each")
    for key in estimates[0]:
        values = np.array([numbers[key] for numbers in estimates])
        width = np.mean([interval[key][1] - interval[key][0] for interval in intervals])
        held = np.mean([interval[key][0] <= values.mean() <= interval[key][1] for interval in intervals])
        print(f"  {key}: sd of the estimates {values.std(ddof=1):.4f}, interval width / 3.92 {width / 3.92:.4f} "
              f"({width / 3.92 / values.std(ddof=1):.1f}×); intervals holding the estimates' mean: {held:.0%}")


if __name__ == "__main__":
    main()
