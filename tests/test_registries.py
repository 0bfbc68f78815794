"""Every registry behaves the same: duplicates raise, unknown names list the valid ones; every registered model and
dataset has a tiny preset for the tests generated from the registries."""

import pytest

from presets import DATASET_PRESETS, MODEL_PRESETS
from unlearn_cli.data import list_datasets
from unlearn_cli.models import list_models
from unlearn_cli.registry import Registry


def test_duplicate_name_raises():
    registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: 2)


def test_unknown_name_lists_valid_ones():
    registry = Registry("thing")
    registry.register("alpha")(lambda: 1)
    registry.register("beta")(lambda: 2)
    with pytest.raises(ValueError, match="unknown thing 'gamma'; choose one of: alpha, beta"):
        registry.get("gamma")
    assert registry.names() == ["alpha", "beta"] and "alpha" in registry


def test_the_presets_table_covers_every_registered_model_and_dataset():
    # the registry-generated tests look their sizes up in presets.py: a new entry without a preset fails here first
    assert sorted(MODEL_PRESETS) == sorted(list_models())
    assert sorted(DATASET_PRESETS) == sorted(list_datasets())
