"""Choose a pipeline's learning rate: the grid value whose runs have the smallest mean average gap to the oracle.

Usage:
    python select_lr.py PIPELINE OUTPUT.txt LR=RESULTS.json [LR=RESULTS.json ...]

Each RESULTS.json is written by `unlearn evaluate --json` (format unlearn-results/1); give one per
learning rate and forget set. The mean of `average_gap` over a learning rate's files decides; a run
without a gap (a diverged model) counts as infinitely far. OUTPUT gets the winning value exactly as
written on the command line, so the Makefile finds the runs it already made at that learning rate.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

RESULTS_FORMAT = "unlearn-results/1"


def average_gaps(path: str) -> list[float]:
    document = json.loads(Path(path).read_text())
    if document.get("format") != RESULTS_FORMAT:
        sys.exit(f"error: {path}: not an {RESULTS_FORMAT} file")
    gaps = [result.get("average_gap") for result in document["results"]]
    return [math.inf if gap is None else float(gap) for gap in gaps]


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit(__doc__)
    pipeline, output, pairs = argv[0], argv[1], argv[2:]
    gaps: dict[str, list[float]] = {}
    for pair in pairs:
        lr, sep, path = pair.partition("=")
        if not sep:
            sys.exit(f"error: {pair!r}: write LR=RESULTS.json")
        gaps.setdefault(lr, []).extend(average_gaps(path))
    means = {lr: sum(values) / len(values) for lr, values in gaps.items()}
    best = min(means, key=lambda lr: means[lr])  # first in grid order on a tie
    if math.isinf(means[best]):
        sys.exit(f"error: {pipeline}: no learning rate of {', '.join(means)} gave a finite average gap")
    for lr, mean in means.items():
        print(f"{pipeline}: lr {lr}: mean average gap {mean:.2f} over {len(gaps[lr])} runs" + ("  <- chosen" if lr == best else ""))
    Path(output).write_text(best + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
