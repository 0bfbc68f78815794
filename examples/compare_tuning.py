"""What tuning without an oracle costs: per forget set and pipeline, the settings chosen without an oracle and
with one (both on the validation forget set), and the average gap to the oracle each choice reaches on the
reported forget set, mean ± 95% t-margin over seeds, with the paired difference per seed.

Usage:
    python compare_tuning.py --work work --seeds "0 1 2" iid:del=del_b0.3_lr0.05_e16/del_b0.3_lr0.08_e32 …

Each FORGET_SET:PIPELINE=FREE_RUN/ORACLE_RUN names the runs (WORK/<set>/s<seed>/<run>.json, written by
`unlearn evaluate --json`) at the two modes' choices; the choices are read from WORK/tuned-<mode>/<set>/<p>.yaml (<p>-c<CAP>.yaml at a cost cap, --cap).
Writes markdown to stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml
from chosen_settings import chosen

from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import summarize
from unlearn_cli.evaluate.results import read_results


def average_gap(path: Path) -> float:
    (run,) = read_results(str(path))  # one run per file, as `unlearn evaluate` writes them in the recipes
    return math.inf if run["average_gap"] is None else run["average_gap"]  # a diverged run is infinitely far


def shown(summary) -> str:
    if summary.n == 0 or not math.isfinite(summary.mean):
        return "—"
    return f"{summary.mean:.2f} ± {summary.margin:.2f}"


def table(work: Path, seeds: list[int], forget_set: str, pairs: list[tuple[str, str, str]], cap: str = "") -> list[str]:
    lines = [f"## Forget set: {forget_set}", "",
             "| pipeline | chosen without an oracle (budget/lr/epochs) | chosen with the oracle | same | "
             "average gap, tuned without an oracle | average gap, tuned with the oracle | difference (paired) |",
             "|---|---|---|---|---|---|---|"]
    same_count, differences = 0, []
    for pipeline, free_run, oracle_run in pairs:
        name = f"{pipeline}-c{cap}.yaml" if cap else f"{pipeline}.yaml"
        settings = {mode: chosen(yaml.safe_load((work / f"tuned-{mode}" / forget_set / name).read_text()))
                    for mode in ("free", "oracle")}
        free = [average_gap(work / forget_set / f"s{seed}" / f"{free_run}.json") for seed in seeds]
        oracle = [average_gap(work / forget_set / f"s{seed}" / f"{oracle_run}.json") for seed in seeds]
        paired = [a - b for a, b in zip(free, oracle)]
        same = settings["free"] == settings["oracle"]
        same_count += same
        difference = summarize(paired)
        differences.append(difference.mean)
        lines.append(f"| {pipeline} | {settings['free'].replace('@', ' / ').replace('_', '—')} | {settings['oracle'].replace('@', ' / ').replace('_', '—')} | "
                     f"{'yes' if same else 'no'} | {shown(summarize(free))} | {shown(summarize(oracle))} | "
                     f"{shown(difference)} |")
    finite = [value for value in differences if math.isfinite(value)]
    cost = sum(finite) / len(finite) if finite else math.nan
    direction = "further from" if cost > 0 else "closer to"
    lines += ["", f"The choice without an oracle equals the oracle-tuned one for {same_count} of {len(pairs)} "
                  f"pipelines; over the {len(finite)} pipelines, tuning without an oracle ended on average "
                  f"{abs(cost):.2f} points of average gap {direction} the oracle (mean paired difference "
                  f"{cost:+.2f}).", ""]
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--cap", default="", help="the cost cap the compared runs were tuned at (none: uncapped)")
    parser.add_argument("pairs", nargs="+", metavar="SET:PIPELINE=FREE_RUN/ORACLE_RUN")
    options = parser.parse_args(argv)
    seeds = [int(seed) for seed in options.seeds.split()]
    by_set: dict[str, list[tuple[str, str, str]]] = {}
    for text in options.pairs:
        key, _, runs = text.partition("=")
        forget_set, _, pipeline = key.partition(":")
        free_run, _, oracle_run = runs.partition("/")
        if not (forget_set and pipeline and free_run and oracle_run):
            sys.exit(f"error: {text!r}: write it as SET:PIPELINE=FREE_RUN/ORACLE_RUN")
        by_set.setdefault(forget_set, []).append((pipeline, free_run, oracle_run))
    lines = ["# Tuning without an oracle: what it costs", "",
             "Settings chosen on a validation forget set, without an oracle (`unlearn tune`) and by the average gap",
             "to that set's oracle (the paper's way); both choices then run on the reported forget set. Average gap",
             f"to the oracle, mean ± 95% t-margin over seeds {options.seeds}; the difference (without − with the",
             "oracle) is paired by seed: positive means tuning without an oracle ended further from the oracle.", ""]
    try:
        for forget_set, pairs in by_set.items():
            lines += table(options.work, seeds, forget_set, pairs, options.cap)
    except (OSError, ValueError, KeyError, UserError) as error:
        sys.exit(f"error: {error}")
    print("\n".join(lines).rstrip())


if __name__ == "__main__":
    main(sys.argv[1:])
