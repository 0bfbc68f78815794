"""The oracle-free depletion estimate (unlearn_cli/tune/depletion.py) against real oracles on Fashion-MNIST class
pairs: results/depletion.md, depletion.json, depletion.csv.

The setting is the suite's (configs/full/train.yaml: a 2×1024 MLP, 60 epochs on a 2,000-example subset;
configs/full/split-noniid.yaml: 10% of the training set drawn from two classes). Per class pair (a, b) the forget
set is `unlearn split --config split-noniid.yaml --classes a,b`, the oracle `unlearn train --config train.yaml
--exclude FORGET` (seed 0, and seeds 1 and 2 to show how much retraining itself varies), the parent the seed-0
original. The pairs are drawn, seeded, by difficulty: a class is hard when the parent's accuracy on it (tuning half
of the test set) is below 90%; the pairs with 0, 1 and 2 hard classes are each shuffled with seed 0, and the first
of each is a fit pair, the next two report pairs; the suite's pair (2, 5) is a report pair.

    fit      the 3 fit pairs: every variant (fraction × repeats × epochs, and the other estimates); the rule: the
             size+prior variant of least mean absolute error against the oracles' accuracy on unseen examples of
             F's classes (mean of seeds 0–2, reported half), among those costing at most MAX_COST × retraining
             (ties: the cheaper)
    report   the report pairs: the module's defaults (which must be the fit stage's choice), run on their own and
             timed, beside every variant for comparison

Usage:
    python depletion.py fit --original work/original-s0.safetensors
    python depletion.py report --original work/original-s0.safetensors
    make depletion        # both, after training the original
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from unlearn_cli.cost import WorkMeter
from unlearn_cli.engine import predict
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.lineage import dataset_for
from unlearn_cli.tune import depletion
from unlearn_cli.tune.depletion import class_mix, per_class_correct, smoothed_error
from unlearn_cli.tune.reference import halve_test_set

HERE = Path(__file__).resolve().parent
HARD = 90.0  # a class is hard when the parent's accuracy on it is below this (%)
SUITE_PAIR = (2, 5)
ORACLE_SEEDS = (0, 1, 2)
MAX_COST = 0.6  # the fit stage's choice must cost at most this × retraining
# the variants tried on the fit pairs: (fractions, epoch share); each with 1 and 2 repeats
GRIDS = (((0.125, 0.25, 0.5), 1.0), ((0.5,), 0.5))


def run(command: list[str]) -> None:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def draw_pairs(parent_accuracy: torch.Tensor) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(fit pairs, report pairs): per number of hard classes, a seeded shuffle; the first fit, the next two report."""
    hard = {c for c in range(len(parent_accuracy)) if float(parent_accuracy[c]) < HARD}
    fit, report = [], []
    for count in (0, 1, 2):
        stratum = [p for p in itertools.combinations(range(len(parent_accuracy)), 2)
                   if len(hard & set(p)) == count and p != SUITE_PAIR]
        order = torch.randperm(len(stratum), generator=torch.Generator().manual_seed(0)).tolist()
        drawn = [stratum[i] for i in order]
        fit.append(drawn[0])
        report.extend(drawn[1:3])
    return fit, report + [SUITE_PAIR]


def pair_name(pair) -> str:
    return f"{pair[0]}-{pair[1]}"


def prepare(pair, args) -> tuple[Path, dict[int, Path]]:
    """The pair's forget set and oracles, made with the CLI (kept in the work folder between runs)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    forget = work / f"forget-{pair_name(pair)}.json"
    data_flags = ["--data-root", args.data_root] if args.data_root else []
    if not forget.exists():
        run([*args.unlearn, "split", "--config", str(HERE / "configs/full/split-noniid.yaml"), "--classes",
             f"{pair[0]},{pair[1]}", *data_flags, "--quiet", "-o", str(forget)])
    oracles = {}
    for seed in ORACLE_SEEDS:
        oracles[seed] = work / f"oracle-{pair_name(pair)}-s{seed}.safetensors"
        if not oracles[seed].exists():
            run([*args.unlearn, "train", "--config", str(HERE / "configs/full/train.yaml"), "--exclude", str(forget),
                 "--seed", str(seed), *data_flags, "--quiet", "-o", str(oracles[seed])])
    return forget, oracles


def model_accuracies(model, data, forget_indices, weights, tuning, reported) -> dict:
    """acc(F), and the accuracy on unseen test examples of F's classes (each class weighted by F's mix) on the
    reported and on the tuning half, %."""
    logits, labels = predict(model, data.batches("train", forget_indices, 512))
    result = {"forget": 100.0 * float((logits.argmax(1) == labels).double().mean())}
    for name, positions in (("unseen_reported", reported), ("unseen_tuning", tuning)):
        correct, total = per_class_correct(*predict(model, data.batches("test", positions, 512)), len(weights))
        result[name] = float((weights * 100.0 * correct.double() / total.double()).sum())
    return result


def variant_estimates(parent, data, forget_indices: torch.Tensor, tuning: torch.Tensor) -> dict[str, dict]:
    """Every variant on this forget set, each with its expected acc(F), F-weighted drop and cost ×retrain, from one
    set of fits per grid (a variant uses the first `repeats` fits of its fraction):

    size+prior   the module's estimate (tune/depletion.py)
    size-only    its learning-curve term alone
    prior-only   its prior-shift term alone (one forward pass of the parent)
    ratio        the ratio of the errors of a subsampled fit without F's examples and the same fit with them, carried
                 to the parent: Δ̂ = e_P (e_depleted / e_full − 1), the errors pooled over the fits
    raw          the drop between those two fits, as measured at the subsample size
    """
    forget_labels = data.train_labels[forget_indices]
    weights = class_mix(forget_labels, data.num_classes)
    in_forget = torch.zeros(data.num_train, dtype=torch.bool)
    in_forget[forget_indices] = True
    variants = {}
    for fractions, share in GRIDS:
        curve = depletion.learning_curve(parent, data, tuning, fractions=fractions, repeats=2, epoch_share=share)
        estimate = depletion.class_drops(parent, data, forget_indices, tuning, curve=curve)
        settings, batch_size = depletion.recipe_settings(parent.config, share)
        parent_pass = curve.work.units - sum(fit.work.units for fit in curve.fits)
        retrain = estimate.retrain_units
        parent_error = smoothed_error(curve.parent_correct, curve.total)
        depleted = {}  # fit's position -> (correct, work) of the same fit without F's examples
        for position, fit in enumerate(curve.fits):
            indices = depletion.subsample(data.train_labels, fit.fraction, fit.seed)
            indices = indices[~in_forget[indices]]
            with WorkMeter() as meter:
                correct = depletion.fit_correct(parent, data, indices, tuning, settings, batch_size, fit.seed,
                                                torch.device("cpu"))
            depleted[position] = (correct, meter.work)

        def record(name, drops, units):
            drops = torch.minimum(drops, estimate.parent_accuracy)
            variants[name] = {"expected_forget": float((weights * (estimate.parent_accuracy - drops)).sum()),
                              "drop": float((weights * drops).sum()),
                              "drops": [round(float(d), 3) for d in drops], "cost_x_retrain": units / retrain}

        record("prior-only", estimate.prior_drops, parent_pass)
        for fraction in fractions:
            for repeats in (1, 2):
                positions = [i for i, fit in enumerate(curve.fits) if fit.fraction == fraction][:repeats]
                fits = [curve.fits[i] for i in positions]
                label = f"f={fraction:g} e={fits[0].epochs} r={repeats}"
                size = depletion.size_drops(parent_error, estimate.shares, curve.exponents(fits))
                units = parent_pass + sum(fit.work.units for fit in fits)
                record(f"size+prior {label}", estimate.prior_drops + size, units)
                record(f"size-only {label}", size, units)
                full = torch.stack([smoothed_error(fit.correct, curve.total) for fit in fits])
                less = torch.stack([smoothed_error(depleted[i][0], curve.total) for i in positions])
                units += sum(depleted[i][1].units for i in positions)
                record(f"ratio {label}", parent_error * less.sum(0) / full.sum(0) - parent_error, units)
                record(f"raw {label}", (less - full).mean(0), units)
    return variants


def measure_pair(pair, role, args, parent, data, tuning, reported, chosen_only=False) -> dict:
    started = time.perf_counter()
    forget_path, oracle_paths = prepare(pair, args)
    oracle_seconds = time.perf_counter() - started
    forget_indices = torch.tensor(json.loads(forget_path.read_text())["indices"], dtype=torch.long)
    forget_labels = data.train_labels[forget_indices]
    weights = class_mix(forget_labels, data.num_classes)
    shares = depletion.depleted_shares(data.train_labels, forget_indices, data.num_classes)
    result = {"pair": list(pair), "role": role, "forget_size": len(forget_indices),
              "forget_counts": {str(c): int((forget_labels == c).sum()) for c in pair},
              "shares": {str(c): round(float(shares[c]), 4) for c in pair},
              "original": model_accuracies(parent.model, data, forget_indices, weights, tuning, reported),
              "oracles": {str(seed): model_accuracies(load_checkpoint(str(path)).model, data, forget_indices, weights,
                                                      tuning, reported) for seed, path in oracle_paths.items()},
              "oracle_seconds": oracle_seconds}
    result["naive"] = result["original"]["unseen_tuning"]  # Δ̂ = 0: the parent's accuracy on unseen examples
    if role == "report":  # the module's defaults, on their own: the estimate a user runs, timed
        started = time.perf_counter()
        estimate = depletion.class_drops(parent, data, forget_indices, tuning, seed=0)
        result["chosen"] = {"expected_forget": estimate.expected_accuracy(forget_labels),
                            "drop": estimate.forget_drop(forget_labels),
                            "prior_drop": float((weights * estimate.prior_drops).sum()),
                            "size_drop": float((weights * estimate.size_drops).sum()),
                            "drops": [round(float(d), 3) for d in estimate.drops],
                            "cost_x_retrain": estimate.cost_x_retrain, "seconds": time.perf_counter() - started,
                            "work": estimate.work.units, "retrain_work": estimate.retrain_units}
    if not chosen_only:
        started = time.perf_counter()
        result["variants"] = variant_estimates(parent, data, forget_indices, tuning)
        result["variant_seconds"] = time.perf_counter() - started
    print(json.dumps({k: v for k, v in result.items() if k != "variants"}), file=sys.stderr, flush=True)
    return result


def target(pair: dict) -> float:
    """The fit stage's yardstick: the oracles' accuracy on unseen examples of F's classes (reported half, F's mix),
    averaged over the oracle seeds; acc(F) itself carries the sampling noise of F's ~100 examples per class."""
    return _mean(oracle["unseen_reported"] for oracle in pair["oracles"].values())


def choose(pairs: list[dict]) -> str:
    names = [n for n in pairs[0]["variants"] if n.startswith("size+prior ")
             and max(p["variants"][n]["cost_x_retrain"] for p in pairs) <= MAX_COST]
    mae = {n: _mean(abs(p["variants"][n]["expected_forget"] - target(p)) for p in pairs) for n in names}
    return min(names, key=lambda n: (round(mae[n], 6), pairs[0]["variants"][n]["cost_x_retrain"]))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def defaults_label(parent) -> str:
    assert len(depletion.FRACTIONS) == 1
    epochs = depletion.recipe_settings(parent.config, depletion.EPOCH_SHARE)[0].epochs
    return f"size+prior f={depletion.FRACTIONS[0]:g} e={epochs} r={depletion.REPEATS}"


def table(results: Path, command: str) -> None:
    """results/depletion.md and depletion.csv from the two stages' JSON (depletion-fit.json, depletion-report.json)."""
    fitted = json.loads((results / "depletion-fit.json").read_text())
    reported = json.loads((results / "depletion-report.json").read_text())
    pairs = reported["pairs"]
    rows = []
    for p in pairs:
        a, b = (str(c) for c in p["pair"])
        oracle = p["oracles"]["0"]
        forget = [o["forget"] for o in p["oracles"].values()]
        estimate, naive = p["chosen"]["expected_forget"], p["naive"]
        rows.append({
            "pair": f"{a},{b}", "share_a": p["shares"][a], "share_b": p["shares"][b],
            "original_forget": p["original"]["forget"], "original_unseen": p["original"]["unseen_reported"],
            "oracle_forget": oracle["forget"], "oracle_unseen": oracle["unseen_reported"],
            "oracles_forget_mean": _mean(forget),
            "oracles_forget_sd": (sum((x - _mean(forget)) ** 2 for x in forget) / (len(forget) - 1)) ** 0.5,
            "oracles_unseen_mean": target(p),
            "naive": naive, "estimate": estimate, "drop": p["chosen"]["drop"],
            "prior_drop": p["chosen"]["prior_drop"], "size_drop": p["chosen"]["size_drop"],
            "error": abs(estimate - oracle["forget"]), "naive_error": abs(naive - oracle["forget"]),
            "error_unseen": abs(estimate - oracle["unseen_reported"]),
            "naive_error_unseen": abs(naive - oracle["unseen_reported"]),
            "error_forget_mean": abs(estimate - _mean(forget)), "naive_error_forget_mean": abs(naive - _mean(forget)),
            "error_unseen_mean": abs(estimate - target(p)), "naive_error_unseen_mean": abs(naive - target(p)),
            "other_oracle_error": _mean(abs(x - oracle["forget"]) for x in forget[1:]),
            "cost_x_retrain": p["chosen"]["cost_x_retrain"], "seconds": p["chosen"]["seconds"]})
    with open(results / "depletion.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows])
    mae = {key: _mean(row[key] for row in rows) for key in rows[0] if "error" in key}
    lines = ["| pair | s_a / s_b | original acc(F) | original unseen | oracle acc(F) | oracle unseen | "
             "oracles 0–2 acc(F) | naive (Δ̂ = 0) | estimate | Δ̂ = prior + size | \\|est − oracle\\| | "
             "\\|naive − oracle\\| | cost ×retrain |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['pair']} | {row['share_a']:.2f} / {row['share_b']:.2f} | {row['original_forget']:.1f} | "
                     f"{row['original_unseen']:.1f} | {row['oracle_forget']:.1f} | {row['oracle_unseen']:.1f} | "
                     f"{row['oracles_forget_mean']:.1f} ± {row['oracles_forget_sd']:.1f} | {row['naive']:.1f} | "
                     f"{row['estimate']:.1f} | {row['drop']:.1f} = {row['prior_drop']:.1f} + {row['size_drop']:.1f} | "
                     f"**{row['error']:.1f}** | {row['naive_error']:.1f} | {row['cost_x_retrain']:.2f} |")
    lines.append(f"| **MAE** | | | | | | | | | | **{mae['error']:.1f}** | {mae['naive_error']:.1f} | "
                 f"{_mean(r['cost_x_retrain'] for r in rows):.2f} |")
    variant_lines = ["| variant | cost ×retrain | fit pairs: MAE vs oracles' unseen | report pairs: MAE vs oracles' "
                     "unseen | report pairs: MAE vs seed-0 oracle's acc(F) |", "|---|---|---|---|---|"]

    def variant_mae(group, name, yardstick):
        return _mean(abs(p["variants"][name]["expected_forget"] - yardstick(p)) for p in group)

    seed_0 = lambda p: p["oracles"]["0"]["forget"]  # noqa: E731
    for name in sorted(fitted["pairs"][0]["variants"], key=lambda n: (n.split()[0], n)):
        cost = _mean(p["variants"][name]["cost_x_retrain"] for p in fitted["pairs"] + pairs)
        mark = " **(chosen)**" if name == fitted["chosen"] else ""
        variant_lines.append(f"| {name}{mark} | {cost:.2f} | {variant_mae(fitted['pairs'], name, target):.1f} | "
                             f"{variant_mae(pairs, name, target):.1f} | {variant_mae(pairs, name, seed_0):.1f} |")
    variant_lines.append(f"| naive (Δ̂ = 0) | 0 | {_mean(abs(p['naive'] - target(p)) for p in fitted['pairs']):.1f} | "
                         f"{mae['naive_error_unseen_mean']:.1f} | {mae['naive_error']:.1f} |")
    fit_lines = ["| pair | s_a / s_b | oracle acc(F) | oracles 0–2 unseen | naive | chosen estimate |",
                 "|---|---|---|---|---|---|"]
    for p in fitted["pairs"]:
        a, b = (str(c) for c in p["pair"])
        chosen = p["variants"][fitted["chosen"]]["expected_forget"]
        fit_lines.append(f"| {a},{b} | {p['shares'][a]:.2f} / {p['shares'][b]:.2f} | {seed_0(p):.1f} | "
                         f"{target(p):.1f} | {p['naive']:.1f} | {chosen:.1f} |")
    values = {"command": command, "variant_table": "\n".join(variant_lines), "table": "\n".join(lines),
              "fit_table": "\n".join(fit_lines), "chosen": fitted["chosen"], "max_cost": fitted["max_cost"],
              "fit_minutes": fitted["seconds"] / 60, "report_minutes": reported["seconds"] / 60,
              "estimate_seconds": _mean(r["seconds"] for r in rows),
              "oracle_seconds": _mean(p["oracle_seconds"] for p in pairs),
              "cost": _mean(r["cost_x_retrain"] for r in rows),
              "bias": _mean(r["estimate"] - r["oracle_forget"] for r in rows),
              "bias_unseen_mean": _mean(r["estimate"] - r["oracles_unseen_mean"] for r in rows),
              "work_seconds": fitted["seconds"] + reported["seconds"],
              "work_minutes": (fitted["seconds"] + reported["seconds"]) / 60,
              "ratio_mae": variant_mae(pairs, "ratio f=0.25 e=60 r=1", target)
              if all("variants" in p for p in pairs) else math.nan,
              "parent_accuracy": ", ".join(f"{c}: {a:.1f}" for c, a in enumerate(fitted["parent_accuracy_tuning"])),
              "fit_pairs": ", ".join(f"({a}, {b})" for a, b in fitted["fit_pairs"]),
              "report_pairs": ", ".join(f"({a}, {b})" for a, b in fitted["report_pairs"]),
              **{f"mae_{k}": v for k, v in mae.items()}}
    template = (HERE / "depletion.md.in").read_text()
    (results / "depletion.md").write_text(template.format(**values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("fit", "report", "table"))
    parser.add_argument("--original", default=str(HERE / "work/original-s0.safetensors"))
    parser.add_argument("--work", default=str(HERE / "work/depletion"))
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--unlearn", default=f"{sys.executable} -m unlearn_cli", help="how to run the CLI")
    parser.add_argument("--chosen-only", action="store_true", help="report: skip the variants")
    args = parser.parse_args()
    args.unlearn = args.unlearn.split()
    if args.stage == "table":
        table(Path(args.results), " ".join(sys.argv))
        return
    started = time.perf_counter()
    parent = load_checkpoint(args.original)
    data = dataset_for(parent, args.data_root)
    tuning, reported = halve_test_set(data.test_labels, 0)
    correct, total = per_class_correct(*predict(parent.model, data.batches("test", tuning, 512)), data.num_classes)
    parent_accuracy = 100.0 * correct.double() / total.double()
    fit_pairs, report_pairs = draw_pairs(parent_accuracy)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"depletion-{args.stage}.json"
    common = {"parent": args.original, "parent_accuracy_tuning": [round(float(a), 2) for a in parent_accuracy],
              "hard_below": HARD, "fit_pairs": fit_pairs, "report_pairs": report_pairs,
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if args.stage == "fit":
        pairs = [measure_pair(p, "fit", args, parent, data, tuning, reported) for p in fit_pairs]
        chosen = choose(pairs)
        print(f"chosen: {chosen}; the module's defaults: {defaults_label(parent)}", file=sys.stderr)
        document = {**common, "pairs": pairs, "chosen": chosen, "max_cost": MAX_COST}
    else:
        fitted = json.loads((results / "depletion-fit.json").read_text())
        if fitted["chosen"] != defaults_label(parent):
            sys.exit(f"the module's defaults ({defaults_label(parent)}) are not the fit stage's choice "
                     f"({fitted['chosen']}); set FRACTIONS, REPEATS and EPOCH_SHARE in unlearn_cli/tune/depletion.py")
        pairs = [measure_pair(p, "report", args, parent, data, tuning, reported, args.chosen_only)
                 for p in report_pairs]
        document = {**common, "pairs": pairs, "chosen": fitted["chosen"]}
    document["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {out} ({document['seconds']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
