"""Every registry behaves the same: duplicates raise, unknown names list the valid ones."""

import pytest

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
