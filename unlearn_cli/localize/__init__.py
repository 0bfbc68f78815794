"""Localization (the DEL paper, Sections 4–5): which parameters matter for a forget set, as a mask.

The pieces: `criteria` (a score per scalar), `units` (scalars grouped into parameters, neurons or
layers), `budget` (the longest prefix of units that fits) and `strategies` (the registry of presets
and algorithms built from them). `options` declares what decides a mask without torch; the names below are
imported from their modules when first used.

Usage:
    from unlearn_cli.localize import LocalizationData, LocalizeSettings, localize
    forget = LocalizationData(forget_batches=lambda: data.batches("train", indices, 128))
    mask = localize(model, forget, LocalizeSettings(strategy="del", budget=0.3))   # {name: bool tensor}
"""

from unlearn_cli.lazy import lazy_attributes

_HOMES = {
    "SEARCHABLE": "options", "LocalizeOptions": "options",
    "LocalizationData": "base", "LocalizeSettings": "base", "Mask": "base",
    "CRITERIA": "criteria", "list_criteria": "criteria", "summed_gradient": "criteria",
    "NO_CRITERION": "strategies", "STRATEGIES": "strategies", "Strategy": "strategies", "get_strategy": "strategies",
    "list_strategies": "strategies", "localize": "strategies", "random_like": "strategies",
    "resolve_settings": "strategies",
    "GRANULARITIES": "units", "build_units": "units", "list_granularities": "units", "parameter_shapes": "units",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_attributes(__name__, _HOMES)
