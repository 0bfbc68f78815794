"""The reference memorization estimate of every training example over a pool of models trained on random halves, and
the proxy `unlearn train` records, ranked against it: results/memorization.md and results/memorization/.

The setting is the suite's (configs/full/train.yaml: a 2×1024 MLP, 60 epochs on a 2,000-example Fashion-MNIST
subset). Model k of the pool (`make memorization` trains them) is `unlearn train --exclude left-out-k.json --seed k`,
left-out-k.json a uniform half of the training subset (`unlearn split --kind iid --fraction 0.5 --seed k`). Per
example i, mem(i) = mean softmax probability of the label over the models that trained on i − over those that did
not (`unlearn_cli.evaluate.memorization`; Feldman & Zhang 2020), and the same on 0/1 correctness. The proxy is
1 − the training-time confidence two originals on the whole subset recorded (seeds not in the pool).

Usage:
    python memorization.py --work work/memorization --models 64 --proxies work/memorization/proxy-s1000.safetensors \
        work/memorization/proxy-s1001.safetensors --results results
    make memorization        # the pool, the proxies and this
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import time
from pathlib import Path

import torch

from unlearn_cli.data.splits import LEVELS, terciles
from unlearn_cli.engine import predict
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.memorization import (label_probability, memorization_estimate, rank_correlation,
                                               split_half_reliability)
from unlearn_cli.io.checkpoint import load_checkpoint, read_checkpoint_file
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.memorization import memorization_json, read_memorization_file
from unlearn_cli.lineage import dataset_for
from unlearn_cli.runs.memorization import check_scores_fit, read_memorization_source


def measure_pool(work: Path, models: int, data_root: str | None):
    """(confidence [M, N], correctness [M, N], membership [M, N] bool, the models' records, the data, its dataset's
    name, summed training seconds) of half-0 … half-(M−1), each checked against the half it was trained without."""
    confidence, correctness, membership, records, seconds, data = [], [], [], [], 0.0, None
    for k in range(models):
        checkpoint = load_checkpoint(str(work / f"half-{k}.safetensors"))
        data = data or dataset_for(checkpoint, data_root)
        left_out = read_forget_set(str(work / f"left-out-{k}.json"), num_train=data.num_train, dataset=checkpoint.dataset)
        if checkpoint.provenance.excluded_sha256 != left_out.sha256:
            raise SystemExit(f"{checkpoint.source} was not trained without {left_out.source}; run `make memorization` again")
        logits, labels = predict(checkpoint.model, data.batches("train", batch_size=1000))
        confidence.append(label_probability(logits, labels))
        correctness.append((logits.argmax(1) == labels).double())
        member = torch.ones(data.num_train, dtype=torch.bool)
        member[left_out.indices] = False
        membership.append(member)
        records.append({"sha256": checkpoint.sha256, "seed": checkpoint.provenance.seed,
                        "excluded_sha256": left_out.sha256})
        seconds += checkpoint.wall_time_s or 0.0
    return torch.stack(confidence), torch.stack(correctness), torch.stack(membership), records, data, checkpoint.dataset, \
        seconds


def tercile_table(proxy: torch.Tensor, reference: torch.Tensor) -> list[str]:
    """Markdown rows: per tercile of the proxy, its size, the reference's mean and median, and how many of its
    examples fall in each tercile of the reference."""
    by_proxy, by_reference = terciles(proxy), terciles(reference)
    rows = ["| proxy tercile | examples | reference mem, mean | median | in the reference's low / mid / high |",
            "|---|---|---|---|---|"]
    for level, name in enumerate(LEVELS):
        inside = by_proxy == level
        values = reference[inside & torch.isfinite(reference)]
        counts = " / ".join(str(int((inside & (by_reference == other)).sum())) for other in range(3))
        rows.append(f"| {name} | {int(inside.sum())} | {float(values.mean()):.3f} | {float(values.median()):.3f} | "
                    f"{counts} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder of half-K.safetensors and left-out-K.json")
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--proxies", nargs=2, required=True, help="two originals that record the proxy")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    confidence, correctness, membership, records, data, dataset, train_seconds = measure_pool(
        args.work, args.models, args.data_root)
    estimate = memorization_estimate(confidence, membership)
    estimate_correct = memorization_estimate(correctness, membership)
    reliability = split_half_reliability(confidence, membership)
    reliability_correct = split_half_reliability(correctness, membership)
    proxies = [read_checkpoint_file(path) for path in args.proxies]  # their seeds and wall times (no model built)
    try:
        sources = [read_memorization_source(path, "--proxies") for path in args.proxies]
        for scores in sources:
            check_scores_fit(scores, dataset, data.kwargs, data.num_train)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    proxy = [scores.values for scores in sources]
    seeds = [model.provenance.seed for model in proxies]
    members = membership.sum(0)

    folder = args.results / "memorization"
    folder.mkdir(parents=True, exist_ok=True)
    notes = {"estimator": "mean over the models that trained on the example − mean over those that did not",
             "value": "softmax probability of the label (memorization); 0/1 correctness (memorization_correct)",
             "split_half": {"memorization": reliability, "memorization_correct": reliability_correct}}
    reference_path = folder / "reference.json"
    reference_path.write_bytes(memorization_json(estimate, estimate_correct, members, dataset=dataset,
                                                 dataset_kwargs=data.kwargs, models=records, extra=notes))
    read_memorization_file(str(reference_path))  # what `audit --memorization` will read
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "label", "members", "memorization", "memorization_correct",
                     *[f"proxy_seed{seed}" for seed in seeds], "reference_tercile", f"proxy_seed{seeds[0]}_tercile"])
    reference_levels, proxy_levels = terciles(estimate), terciles(proxy[0])
    for index in range(data.num_train):
        values = [estimate[index], estimate_correct[index], *[p[index] for p in proxy]]
        writer.writerow([index, int(data.train_labels[index]), int(members[index]),
                         *[f"{float(v):.6g}" for v in values],
                         *[LEVELS[level] if level >= 0 else "" for level in (int(reference_levels[index]),
                                                                             int(proxy_levels[index]))]])
    (folder / "memorization.csv").write_text(buffer.getvalue())

    correlations = [
        (f"proxy (seed {seeds[0]}) vs reference", *rank_correlation(proxy[0], estimate)),
        (f"proxy (seed {seeds[1]}) vs reference", *rank_correlation(proxy[1], estimate)),
        (f"proxy (seed {seeds[0]}) vs proxy (seed {seeds[1]})", *rank_correlation(proxy[0], proxy[1])),
        ("reference: even models vs odd models (split half)", reliability["halves"], reliability["examples"]),
        (f"proxy (seed {seeds[0]}) vs reference on correctness", *rank_correlation(proxy[0], estimate_correct)),
        ("reference on confidence vs on correctness", *rank_correlation(estimate, estimate_correct)),
        ("reference on correctness: even vs odd models", reliability_correct["halves"], reliability_correct["examples"]),
    ]
    scored = torch.isfinite(estimate)
    quantiles = torch.quantile(estimate[scored], torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    elapsed = time.perf_counter() - started
    lines = [
        "# Memorization of the training examples: the reference estimate and the training-time proxy", "",
        f"Fashion-MNIST, the suite's 2×1024 MLP (configs/full/train.yaml: 60 epochs on a {data.num_train:,}-example "
        f"subset). Reference: {args.models} models, model k (seed k) trained without a uniform half of the subset "
        f"(`unlearn split --kind iid --fraction 0.5 --seed k`, `unlearn train --exclude`); each example was in the "
        f"training data of {int(members.min())}–{int(members.max())} of them (median "
        f"{int(members.median())}). mem(i) = mean softmax probability of i's label over the models that trained on "
        f"i − over those that did not (Feldman & Zhang 2020); on correctness, the same with 0/1 correctness. Proxy: "
        f"1 − the mean confidence on the label over the training steps that trained on the example, which `unlearn "
        f"train` records (docs/memorization.md), of two originals on the whole subset (seeds {seeds[0]} and "
        f"{seeds[1]}, not in the pool).", "",
        f"Reference estimate over the {int(scored.sum())} examples: mean {float(estimate[scored].mean()):.3f}, "
        f"10% / 50% / 90% quantiles {quantiles[0]:.3f} / {quantiles[1]:.3f} / {quantiles[2]:.3f}; "
        f"{int((estimate[scored] > 0.5).sum())} examples above 0.5. Split-half reliability stepped up to "
        f"{args.models} models (Spearman-Brown): {reliability['spearman_brown']:.3f} on confidence, "
        f"{reliability_correct['spearman_brown']:.3f} on correctness.", "",
        "| rank correlation (Spearman) | ρ | examples |", "|---|---|---|",
        *[f"| {name} | {rho:.3f} | {count} |" for name, rho, count in correlations], "",
        f"The terciles `split --kind memorization` and `audit --memorization` use (docs/memorization.md), of the "
        f"seed-{seeds[0]} proxy, against the reference:", "",
        *tercile_table(proxy[0], estimate), "",
        f"Cost: the {args.models} half-data models trained in {train_seconds / 60:.1f} min of recorded wall time "
        f"(one thread; {train_seconds / args.models:.1f} s each, plus each command's start), the two proxies in "
        f"{sum(model.wall_time_s or 0.0 for model in proxies):.0f} s; this report {elapsed:.0f} s. Raw: "
        f"memorization/reference.json (`unlearn-memorization/1`, readable by `unlearn audit --memorization`), "
        f"memorization/memorization.csv (per example).", "",
    ]
    (args.results / "memorization.md").write_text("\n".join(lines))
    print(f"wrote {args.results / 'memorization.md'} ({elapsed:.0f} s)", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
