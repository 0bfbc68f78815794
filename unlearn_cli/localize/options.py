"""The options that decide a mask, declared without torch: `localize`'s flags and `--help` (which lists the
strategies, criteria and granularities from `unlearn_cli.names`) need nothing more.

Usage:
    options = LocalizeOptions(strategy="del", budget=0.3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unlearn_cli import names
from unlearn_cli.config import option, seed_option
from unlearn_cli.errors import UserError


def parse_budget(text: str | None) -> float | None:
    """`--budget` as typed: a number, else a one-line error (not a usage error)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--budget {text!r}: not a number; give a fraction of the parameters in (0, 1], e.g. "
                        f"--budget 0.3") from None


@dataclass
class LocalizeOptions:
    """The options that decide a mask: `localize`'s flags and YAML keys, and (but the strategy and seed) the
    localization keys of `tune --grid`. `criterion` / `granularity` None means the strategy's preset."""

    strategy: str = option("del", f"One of: {', '.join(names.STRATEGIES)}")
    budget: Optional[float] = option(None, "Fraction of all parameters in (0, 1], e.g. 0.3 (critmem: optional cap)",
                                     parse=parse_budget)  # a cap for critmem
    criterion: Optional[str] = option(None, f"Override the strategy's criterion: {', '.join(names.CRITERIA)}")
    granularity: Optional[str] = option(None, f"Override the strategy's granularity: {', '.join(names.GRANULARITIES)}")
    topk: float = option(0.1, "Share of a neuron's top scores averaged into its score")  # DEL
    max_iterations: int = option(100, "critmem: channels zeroed per example at most")
    seed: int = seed_option()  # `random` draws


SEARCHABLE = tuple(item for item in LocalizeOptions.__dataclass_fields__ if item not in ("strategy", "seed"))
