"""Selection regret: how far the setting a search chose lies from the best setting of its grid, both scored by the
average gap to the oracle on the reported forget set.

A search chooses on validation forget sets. To see what the choice costs, the same grid (its extensions included,
nothing stopped early) is run once more on the reported forget set from the tuning seed's original and scored
against that seed's oracle (`unlearn tune --oracle … --extend 0 --no-halving`). A mode's regret is the average gap
of the candidate it chose minus the smallest average gap of the grid, in points; 0 means the search found the best
setting the grid had.

Usage:
    python regret.py args work/tuned-free/iid/del-c0.1.yaml [work/tuned-oracle/iid/del-c0.1.yaml]
        # -> the search's own `unlearn tune` arguments (strategy, method, grids, fixed options, cap, seed), each
        #    grid the union of the searches' own
    python regret.py covers work/regret/iid/del-c0.1.yaml work/tuned-free/iid/del-c0.1.yaml
        # -> exit 0 when the search's choice is a point the rerun grid ran to the end, 1 otherwise
    python regret.py table --work work --cap 0.1 iid:del iid:finetune noniid:del …
        # -> markdown: per forget set and pipeline, each mode's choice, its gap and regret, from
        #    WORK/tuned-<mode>/<set>/<p>-c<cap>.yaml and WORK/regret/<set>/<p>-c<cap>.yaml
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

MODES = ("free", "oracle")


def _values(values) -> str:
    return ",".join(str(value).lower() if isinstance(value, bool) else str(value) for value in values)


def search_args(document: dict, *others: dict) -> list[str]:
    """The `unlearn tune` arguments that rerun a search's grid as it ended (extended), without its extension; with
    `others` (the same search in another mode), the union of their grids, so that every choice is a grid point."""
    tune, apply = document["tune"], document["apply"]
    grid = {key: list(values) for key, values in tune["search_space"].items()}
    for other in others:
        for key, values in other["tune"]["search_space"].items():
            grid.setdefault(key, []).extend(value for value in values if value not in grid[key])
    fixed = dict(tune.get("fixed") or {})
    arguments = ["--method", str(apply["method"])]
    strategy, budget = fixed.pop("strategy", None), fixed.pop("budget", None)
    if strategy is not None:
        arguments += ["--strategy", str(strategy)]
    if budget is not None:
        arguments += ["--budget", str(budget)]
    if fixed.pop("calibrate", False):
        arguments.append("--calibrate")
    for key, value in fixed.items():
        arguments += ["--param", f"{key}={value}"]
    for key, values in grid.items():
        arguments += ["--grid", f"{key}={_values(values)}"]
    if tune.get("max_cost") is not None:
        arguments += ["--max-cost", str(apply.get("max_cost", tune["max_cost"]))]
    return arguments + ["--seed", str(tune["seed"])]


def chosen_settings(document: dict) -> dict:
    """The settings of the candidate a search chose (marked `chosen: true`)."""
    marked = [candidate for candidate in document["tune"]["candidates"] if candidate.get("chosen")]
    if len(marked) != 1:
        raise ValueError("no candidate is marked chosen: written by an `unlearn tune` older than the regret table")
    return marked[0]["settings"]


def gaps(document: dict) -> list[tuple[dict, float]]:
    """(settings, average gap) of every candidate that ran to the end."""
    return [(candidate["settings"], math.inf if candidate["objective"] is None else candidate["objective"])
            for candidate in document["tune"]["candidates"] if candidate.get("ran") == 1 and not candidate["failure"]]


def shown(settings: dict) -> str:
    return " ".join(f"{key} {value}" for key, value in settings.items()) or "(given)"


def table(work: Path, cap: str, pairs: list[tuple[str, str]]) -> list[str]:
    name = f"-c{cap}.yaml" if cap else ".yaml"
    lines = ["| forget set | pipeline | best grid point | its gap | chosen without an oracle | gap | regret | "
             "search cost ×retrain | chosen with the oracle | gap | regret | grid points |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    regrets = {mode: [] for mode in MODES}
    for forget_set, pipeline in pairs:
        documents = {mode: yaml.safe_load((work / f"tuned-{mode}" / forget_set / f"{pipeline}{name}").read_text())
                     for mode in MODES if (work / f"tuned-{mode}" / forget_set / f"{pipeline}{name}").exists()}
        scored = gaps(yaml.safe_load((work / "regret" / forget_set / f"{pipeline}{name}").read_text()))
        best_settings, best = min(scored, key=lambda pair: pair[1])
        cells = [forget_set, pipeline, shown(best_settings), f"{best:.2f}"]
        for mode in MODES:
            if mode not in documents:
                cells += ["—", "—", "—"] + (["—"] if mode == "free" else [])
                continue
            settings = chosen_settings(documents[mode])
            gap = next((value for candidate, value in scored if candidate == settings), math.nan)
            regret = gap - best
            regrets[mode].append(regret)
            cells += [shown(settings), f"{gap:.2f}", f"{regret:.2f}"]
            if mode == "free":
                cost = documents[mode]["tune"].get("search_x_retrain")
                cells.append("—" if cost is None else f"{cost:.2f}")
        lines.append("| " + " | ".join(cells + [str(len(scored))]) + " |")
    lines.append("")
    for mode in MODES:
        finite = [value for value in regrets[mode] if math.isfinite(value)]
        if finite:
            lines.append(f"Mean regret, tuned {'without' if mode == 'free' else 'with'} an oracle: "
                         f"{sum(finite) / len(finite):.2f} points over {len(finite)} searches"
                         f" ({sum(value <= 1 for value in finite)} within 1 point).  ")
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    arguments = commands.add_parser("args")
    arguments.add_argument("tuned", nargs="+")
    covers = commands.add_parser("covers")
    covers.add_argument("rerun")
    covers.add_argument("tuned")
    tabled = commands.add_parser("table")
    tabled.add_argument("--work", type=Path, required=True)
    tabled.add_argument("--cap", default="")
    tabled.add_argument("pairs", nargs="+", help="FORGET_SET:PIPELINE")
    options = parser.parse_args(argv)
    try:
        if options.command == "covers":
            settings = chosen_settings(yaml.safe_load(Path(options.tuned).read_text()))
            sys.exit(0 if any(point == settings for point, _ in gaps(yaml.safe_load(Path(options.rerun).read_text())))
                     else 1)
        if options.command == "args":
            print(" ".join(search_args(*(yaml.safe_load(Path(path).read_text()) for path in options.tuned))))
        else:
            pairs = [tuple(pair.split(":", 1)) for pair in options.pairs]
            print("\n".join(table(options.work, options.cap, pairs)))
    except (OSError, KeyError, ValueError, yaml.YAMLError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main(sys.argv[1:])
