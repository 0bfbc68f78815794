"""Time the MIA of `unlearn evaluate` on a CIFAR-10-sized problem with synthetic model outputs.

10,000 shadow members, 10,000 shadow non-members, 5,000 forget examples, 10 classes. Members get
larger true-class logit margins than non-members, the forget set lies in between, so the attack has
real work to do (the distributions overlap, as they do for a real model). Prints the time of each
feature (features + SVC fit + prediction, one thread) and of `mia_scores` with all five features as
`unlearn evaluate` runs it (features fit in parallel threads).

Usage:
    .venv/bin/python benchmarks/bench_evaluate.py [--members 10000] [--forget 5000] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from unlearn_cli.evaluate.mia import _fit_predict, features_of, list_features, mia_scores


def synthetic_logits(count: int, margin_mean: float, margin_std: float, generator: torch.Generator):
    """Logits [count, 10] whose true-class margin is drawn from N(margin_mean, margin_std), and labels [count]."""
    labels = torch.randint(0, 10, (count,), generator=generator)
    logits = torch.randn(count, 10, generator=generator)
    margin = margin_mean + margin_std * torch.randn(count, generator=generator)
    logits[torch.arange(count), labels] += margin
    return logits.float(), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--forget", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    members = synthetic_logits(args.members, 9.0, 3.0, generator)
    nonmembers = synthetic_logits(args.members, 6.0, 4.0, generator)
    forget = synthetic_logits(args.forget, 7.5, 3.5, generator)
    torch.set_num_threads(1)

    print(f"MIA on {args.members:,} members, {args.members:,} non-members, {args.forget:,} forget examples, 10 classes")
    per_feature = {}
    for name in list_features():
        started = time.perf_counter()
        features = [features_of(name, logits, labels) for logits, labels in (members, nonmembers, forget)]
        featured = time.perf_counter()
        _fit_predict(*features)
        per_feature[name] = (featured - started, time.perf_counter() - featured)
    sequential = sum(a + b for a, b in per_feature.values())
    for name, (feature_s, svc_s) in per_feature.items():
        print(f"  {name:12s} features {feature_s:6.2f} s   SVC fit+predict {svc_s:6.2f} s   "
              f"({100 * (feature_s + svc_s) / sequential:4.1f}% of the sequential total)")
    print(f"  sequential total: {sequential:.1f} s")

    started = time.perf_counter()
    scores = mia_scores(*members, *nonmembers, *forget, seed=0, workers=args.workers)
    total = time.perf_counter() - started
    print(f"mia_scores, all five features, {args.workers} worker threads: {total:.1f} s "
          f"(target < 30 s on 2 cores; {sequential / total:.2f}x the sequential time)")
    print("  scores (% of forget judged non-member): " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
