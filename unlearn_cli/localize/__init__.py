"""Localization (the DEL paper, Sections 4–5): which parameters matter for a forget set, as a mask.

The pieces: `criteria` (a score per scalar), `units` (scalars grouped into parameters, neurons or
layers), `budget` (the longest prefix of units that fits) and `strategies` (the registry of presets
and algorithms built from them).

Usage:
    from unlearn_cli.localize import LocalizationData, LocalizeSettings, localize
    forget = LocalizationData(forget_batches=lambda: data.batches("train", indices, 128))
    mask = localize(model, forget, LocalizeSettings(strategy="del", budget=0.3))   # {name: bool tensor}
"""

from unlearn_cli.localize.base import SEARCHABLE, LocalizationData, LocalizeOptions, LocalizeSettings, Mask
from unlearn_cli.localize.criteria import CRITERIA, list_criteria, summed_gradient
from unlearn_cli.localize.strategies import (NO_CRITERION, STRATEGIES, Strategy, get_strategy, list_strategies, localize,
                                             random_like, resolve_settings)
from unlearn_cli.localize.units import GRANULARITIES, build_units, list_granularities, parameter_shapes


def create_strategy(name: str) -> Strategy:
    """The registered strategy `name` (a callable `fn(model, forget, settings) -> Mask`)."""
    return get_strategy(name)


__all__ = [
    "CRITERIA", "GRANULARITIES", "NO_CRITERION", "SEARCHABLE", "STRATEGIES", "LocalizationData", "LocalizeOptions",
    "LocalizeSettings", "Mask", "Strategy",
    "build_units", "create_strategy", "get_strategy", "list_criteria", "list_granularities", "list_strategies",
    "localize", "parameter_shapes", "random_like", "resolve_settings", "summed_gradient",
]
