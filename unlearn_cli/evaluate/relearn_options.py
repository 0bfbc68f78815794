"""The relearning test's options (docs/relearn.md), declared without torch: `evaluate` and `audit` build their
flags and --help from them before anything is measured.

Usage:
    check_relearn_options(RelearnOptions(relearn=True, relearn_lr=[0.01]))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearn_cli.config import check_range, option
from unlearn_cli.errors import UserError, flag


@dataclass
class RelearnOptions:
    """The relearning test's options, shared by `evaluate` and `audit` (their flags and YAML keys)."""

    relearn: bool = option(False, "Finetune a copy of each model on a part of the forget set and score how fast it "
                                  "regains the rest (docs/relearn.md).", "--relearn", switch=True)
    relearn_part: float = option(0.1, "With --relearn: the share of the forget set finetuned on (the rest is scored)")
    relearn_lr: list[float] = option([0.01, 0.1], "With --relearn: a learning rate to relearn at (repeatable)")
    relearn_steps: int = option(10, "With --relearn: SGD steps at each learning rate")
    relearn_batch_size: int = option(32, "With --relearn: examples of the part per step")
    relearn_seed: int = option(0, "With --relearn: draws the part and its batches")


RELEARN_SETTINGS = tuple(item.name for item in dataclasses.fields(RelearnOptions) if item.name != "relearn")


def check_relearn_options(options: RelearnOptions) -> None:
    """The relearning options' values, checked before any file is read; set without `relearn`, they are refused
    (they would do nothing)."""
    if not options.relearn:
        defaults = RelearnOptions()
        changed = [name for name in RELEARN_SETTINGS if getattr(options, name) != getattr(defaults, name)]
        if changed:
            raise UserError(f"{flag(changed[0])} is set but {flag('relearn')} is not; add {flag('relearn')} to run "
                            f"the relearning test, or leave {flag(changed[0])} out")
        return
    for name in RELEARN_SETTINGS:
        values = getattr(options, name)
        for value in values if isinstance(values, list) else [values]:
            check_range(name, value, flag(name))
    rates = options.relearn_lr
    if not rates:
        raise UserError(f"{flag('relearn_lr')}: give at least one learning rate, e.g. {flag('relearn_lr')} 0.01")
    repeated = next((rate for position, rate in enumerate(rates) if rate in rates[:position]), None)
    if repeated is not None:
        raise UserError(f"{flag('relearn_lr')} {repeated:g} is given twice; give each learning rate once")
