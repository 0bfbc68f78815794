"""Candidates from a grid, and successive halving: every candidate runs a short version of itself, the better
half goes on to a longer one, and only the survivors run in full.

A rung is a fraction of the candidate's epochs (at least one epoch): the short run is a complete run with
fewer epochs, its own schedule included. A failed candidate (a diverged loss, a mask that keeps nothing)
never advances and is ranked last; it does not stop the search.

Usage:
    grid = parse_grid(["lr=0.01,0.03,0.1", "epochs=5,10"])       # {"lr": [0.01, 0.03, 0.1], "epochs": [5, 10]}
    trials = successive_halving(expand_grid(grid), run)          # run(candidate, fraction) -> Trial
    ranked = rank_candidates(trials)                             # best first
    chosen = chosen_trial(ranked)                                # ranked[0] if it ran in full, else None
    edge_extensions(grid, ranked[0].candidate.settings)          # {"lr": 0.333…} when 0.1 was the top value
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from unlearn_cli.config import parse_yaml
from unlearn_cli.errors import UserError

RUNGS = (0.25, 0.5, 1.0)  # fractions of a candidate's epochs
MIN_CANDIDATES_FOR_HALVING = 4  # fewer candidates all run in full
MAX_STEP_RATIO = 10.0  # an edge extension steps at most ×10 or ÷10, whatever the spacing of the grid
SIGNIFICANT_DIGITS = 3  # an extended value is rounded to these, so that it reads (and names files) as written


@dataclass(frozen=True)
class Candidate:
    index: int  # position in the grid's order: ties are broken by it
    settings: dict  # grid option -> value

    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.settings.items()) or "(the given settings)"


@dataclass
class Trial:
    candidate: Candidate
    fraction: float  # of the candidate's epochs that ran (1: the full run)
    score: dict = field(default_factory=dict)  # {"objective": …, parts…}; empty when it failed
    failure: str | None = None
    seconds: float = 0.0
    cost: float | None = None  # the full run's predicted cost ×retrain (None: unknown)
    set_scores: list[dict] = field(default_factory=list)  # K > 1 validation forget sets: each one's (score: the mean)

    @property
    def objective(self) -> float:
        value = self.score.get("objective", math.nan)
        return value if self.failure is None and math.isfinite(value) else math.inf


def parse_grid(texts: Sequence[str] | None) -> dict[str, list]:
    """`["lr=0.01,0.1", "epochs=5,10"]` -> {"lr": [0.01, 0.1], "epochs": [5, 10]} (values read as YAML scalars)."""
    grid: dict[str, list] = {}
    for text in texts or ():
        key, separator, values = text.partition("=")
        key = key.strip().replace("-", "_")
        if not separator or not key or not values.strip():
            raise UserError(f"--grid {text!r}: write it as option=value,value,…, e.g. --grid lr=0.01,0.03,0.1")
        if key in grid:
            raise UserError(f"--grid {key} is given twice; list all its values in one --grid {key}=…")
        try:
            parsed = [parse_yaml(value.strip()) for value in values.split(",") if value.strip()]
        except Exception:  # yaml.YAMLError and friends: the value is not a scalar
            raise UserError(f"--grid {text!r}: a value is not a number or a word") from None
        if any(isinstance(value, (list, dict)) or value is None for value in parsed):
            raise UserError(f"--grid {text!r}: each value must be a number, a word or true/false")
        if len(set(map(repr, parsed))) != len(parsed):
            raise UserError(f"--grid {text!r}: a value is listed twice")
        grid[key] = parsed
    return grid


def expand_grid(grid: dict[str, list]) -> list[Candidate]:
    """Every combination, the last option varying fastest; an empty grid is one candidate (the given settings)."""
    keys = list(grid)
    return [Candidate(index, dict(zip(keys, values)))
            for index, values in enumerate(itertools.product(*(grid[key] for key in keys)))]


def successive_halving(candidates: list[Candidate], run: Callable[[Candidate, float], Trial],
                       rungs: Sequence[float] = RUNGS, on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """Run every candidate at the first rung, the better half (at least two) at the next, and so on; every trial
    is returned. Fewer than MIN_CANDIDATES_FOR_HALVING candidates, or `rungs == (1.0,)`, is a plain grid search."""
    if len(candidates) < MIN_CANDIDATES_FOR_HALVING:
        rungs = (1.0,)
    alive, trials = list(candidates), []
    for position, fraction in enumerate(rungs):
        results = []
        for candidate in alive:
            trial = run(candidate, fraction)
            results.append(trial)
            if on_trial is not None:
                on_trial(trial)
        trials += results
        if position == len(rungs) - 1:
            break
        ranked = sorted((trial for trial in results if trial.failure is None),
                        key=lambda trial: (trial.objective, trial.candidate.index))
        alive = [trial.candidate for trial in ranked[:max(2, math.ceil(len(alive) / 2))]]
        if not alive:
            break
    return trials


def rank_candidates(trials: list[Trial]) -> list[Trial]:
    """Each candidate's last trial, best first: full runs by objective, then those stopped early (the longer
    they ran, the higher), then the failed ones."""
    last: dict[int, Trial] = {}
    for trial in trials:
        last[trial.candidate.index] = trial
    return sorted(last.values(), key=lambda trial: (trial.failure is not None, -trial.fraction, trial.objective,
                                                    trial.candidate.index))


def chosen_trial(ranked: list[Trial]) -> Trial | None:
    """The choice among `rank_candidates`' result: the best candidate if it ran in full, else None."""
    return ranked[0] if ranked and ranked[0].failure is None and ranked[0].fraction == 1 else None


def edge_extensions(grid: dict[str, list], chosen: dict) -> dict[str, float | int]:
    """The next value outward for every numeric option (of two values or more) whose chosen value is the
    grid's smallest or largest: one geometric step, the ratio of the edge value to its neighbour
    (0.03, 0.1 chose 0.1 -> 0.333; epochs 8, 16 chose 8 -> 4), at most ×10 or ÷10. An edge choice says the
    best may lie beyond."""
    extensions = {}
    for key, values in grid.items():
        numbers = sorted(value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool))
        value = chosen.get(key)
        if len(numbers) < 2 or len(numbers) != len(values) or numbers[0] <= 0 or value not in (numbers[0], numbers[-1]):
            continue
        edge, neighbour = (numbers[-1], numbers[-2]) if value == numbers[-1] else (numbers[0], numbers[1])
        ratio = min(edge / neighbour, MAX_STEP_RATIO) if edge > neighbour else max(edge / neighbour, 1 / MAX_STEP_RATIO)
        step = edge * ratio
        if all(isinstance(number, int) for number in numbers):
            step = round(step)
            if step in numbers or step < 1:
                continue
        else:  # 3 significant digits: 0.333, not 0.33333333333333337 (the value run is the value written)
            step = float(f"{step:.{SIGNIFICANT_DIGITS}g}")
            if step in numbers:
                continue
        extensions[key] = step
    return extensions


def extend_edges(grid: dict[str, list], trials: list[Trial], run: Callable[[Candidate, float], Trial],
                 admit: Callable[[Candidate], bool], times: int) -> dict[str, list]:
    """While the best full run sits at the edge of a numeric option, run the chosen settings one step beyond
    (`edge_extensions`) in full, at most `times` rounds; a candidate `admit` refuses (past the option's range)
    is not run. `grid` and `trials` grow in place; -> the values added per option."""
    extended: dict[str, list] = {}
    for _ in range(times):
        ranked = rank_candidates(trials)
        best = chosen_trial(ranked)
        if best is None:
            break
        chosen = best.candidate
        beyond = []
        for key, value in edge_extensions(grid, chosen.settings).items():
            candidate = Candidate(len(ranked) + len(beyond), {**chosen.settings, key: value})
            if admit(candidate):
                grid[key] = sorted(grid[key] + [value])
                extended.setdefault(key, []).append(value)
                beyond.append(candidate)
        if not beyond:
            break
        trials += [run(candidate, 1.0) for candidate in beyond]
    return extended


def planned_runs(count: int, rungs: Sequence[float] = RUNGS) -> int:
    """How many runs successive halving makes for `count` candidates when none fails (for progress bars)."""
    if count < MIN_CANDIDATES_FOR_HALVING:
        return count
    total, alive = 0, count
    for position, _ in enumerate(rungs):
        total += alive
        alive = min(alive, max(2, math.ceil(alive / 2)))
    return total


CAP = "cap"  # an epochs value of the grid: the most epochs the cost cap allows ("cap/2": half as many)


def cap_share(value) -> float | None:
    """The share of the cap an epochs value of the grid asks for: "cap" -> 1, "cap/4" -> 0.25; None for a number."""
    if not isinstance(value, str):
        return None
    head, _, divisor = value.replace(" ", "").partition("/")
    if head != CAP or (divisor and not (divisor.isdigit() and int(divisor) >= 1)):
        raise UserError(f"--grid epochs={value}: write a number of epochs, or cap, cap/2, cap/4 … (the most epochs "
                        f"the --max-cost cap allows, or a share of them)")
    return 1 / int(divisor) if divisor else 1.0


def cheapest_within_standard_error(ranked: list[Trial], cost: Callable[[Trial], float]) -> Trial | None:
    """The one-standard-error rule (Hastie, Tibshirani & Friedman 2009, §7.10): among the full runs whose objective
    lies within one standard error (`score["objective_se"]`) of the best one's, the cheapest; the best itself when
    its objective has no standard error."""
    best = chosen_trial(ranked)
    if best is None:
        return None
    error = best.score.get("objective_se")
    if error is None or not math.isfinite(error):
        return best
    close = [trial for trial in ranked
             if trial.failure is None and trial.fraction == 1 and trial.objective <= best.objective + error]
    return min(close, key=lambda trial: (cost(trial), trial.objective, trial.candidate.index))
