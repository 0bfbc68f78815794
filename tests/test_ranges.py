"""Every documented value works: each numeric option is accepted at both ends of its range (`config.BOUNDS`) and
refused one step beyond in one line; every seed 0 … 2⁶³ − 1 trains, unlearns and builds a pool, with the draws of
the seeds in use unchanged."""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from pathlib import Path

import pytest

from conftest import run_cli
from presets import mlp_flags
from test_config_consistency import CONFIGS
from test_seeds import assert_same_run, ok, one_line_error
from unlearn_cli.config import BOUNDS, check_options, parse_yaml, resolve_config
from unlearn_cli.data import DATASETS, list_datasets
from unlearn_cli.errors import UserError
from unlearn_cli.limits import INT64_MAX
from unlearn_cli.methods import get_method, list_methods
from unlearn_cli.models import MODELS, list_models
from unlearn_cli.seeding import EPOCH_STRIDE, derive_seed, epoch_seed

ROOT = Path(__file__).resolve().parent.parent


def _base(kind):
    """int for `Optional[int]`, `int | None` and `list[int]` (an option that takes several values)."""
    options = [option for option in typing.get_args(kind) if option is not type(None)]
    return _base(options[0]) if options else kind


def _listed(kind) -> bool:
    options = [option for option in typing.get_args(kind) if option is not type(None)]
    return typing.get_origin(kind) is list or any(typing.get_origin(option) is list for option in options)


def _resolved(cls, name: str, value, listed: bool):
    """`value` for option `name` of `cls` through the resolver (as a one-value list for a list option)."""
    resolved = getattr(resolve_config(cls, None, {name: [value] if listed else value}), name)
    return resolved[0] if listed else resolved


def declarations() -> dict[str, list[tuple[str, type, typing.Callable]]]:
    """Option name -> (where, type, check(value)) for every numeric option of a command, method, model or dataset;
    check(value) runs the value through the same resolver the command line and YAML files go through."""
    found: dict[str, list] = {}
    configs = [(name, cls) for name, cls in CONFIGS.items()]
    configs += [(f"method {name}", get_method(name).config_class) for name in list_methods()]
    for where, cls in configs:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in BOUNDS:
                kind, listed = hints[field.name], _listed(hints[field.name])
                found.setdefault(field.name, []).append(
                    (where, _base(kind),
                     lambda value, cls=cls, name=field.name, listed=listed: _resolved(cls, name, value, listed)))
    for kind, registry, names in (("model", MODELS, list_models()), ("dataset", DATASETS, list_datasets())):
        for name in names:
            factory = registry.get(name)
            hints = typing.get_type_hints(factory)
            for parameter in inspect.signature(factory).parameters:
                if parameter in BOUNDS and parameter in hints:
                    found.setdefault(parameter, []).append(
                        (f"{kind} {name}", _base(hints[parameter]),
                         lambda value, factory=factory, key=parameter: check_options(factory, {key: value}, "--option")[key]))
    return found


DECLARED = declarations()


def edges(name: str, kind: type) -> tuple[list, list]:
    """(values at the ends of the range, values one step beyond them)."""
    bound = BOUNDS[name]
    step_down = (lambda x: x - 1) if kind is int else (lambda x: math.nextafter(x, -math.inf))
    step_up = (lambda x: x + 1) if kind is int else (lambda x: math.nextafter(x, math.inf))
    low = step_up(bound.minimum) if bound.above else bound.minimum
    inside = [kind(low), kind(bound.maximum)]
    beyond = [kind(bound.minimum) if bound.above else step_down(kind(bound.minimum)), step_up(kind(bound.maximum))]
    if kind is float:
        beyond += [math.inf, -math.inf, math.nan]
    return inside, beyond


def test_every_bound_belongs_to_a_declared_option_and_has_two_ends():
    assert set(BOUNDS) == set(DECLARED), set(BOUNDS) ^ set(DECLARED)
    for name, bound in BOUNDS.items():
        assert bound.minimum is not None and bound.maximum is not None, name


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_ends_of_every_range_are_accepted_and_one_step_beyond_is_refused_in_one_line(name):
    types = {kind for _, kind, _ in DECLARED[name]}
    assert len(types) == 1, f"{name} is declared as {types}"
    inside, beyond = edges(name, types.pop())
    for where, _, check in DECLARED[name]:
        for value in inside:
            assert check(value) == value, (where, value)
        for value in beyond:
            with pytest.raises(UserError) as refused:
                check(value)
            message = str(refused.value)
            assert "\n" not in message and "out of range" in message and BOUNDS[name].describe() in message, message


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_range_is_documented(name):
    table = (ROOT / "docs" / "limits.md").read_text()
    assert f"`{name}`" in table


def test_a_number_with_an_exponent_is_a_number_in_yaml():
    assert parse_yaml("1e-3") == 0.001 and parse_yaml("1.0e38") == 1e38 and parse_yaml("5e-324") == 5e-324
    assert parse_yaml("12") == 12 and parse_yaml("e3") == "e3" and parse_yaml("1e") == "1e"


@pytest.mark.parametrize("arguments, words", [
    (("train", *mlp_flags(), "--epochs", "100001"), "--epochs: 100001 is out of range; it must be ≥ 1 and ≤ 100,000"),
    (("train", *mlp_flags(), "--lr", "1.1e38"), "--lr: 1.1e+38 is out of range; it must be > 0 and ≤ 1e+38"),
    (("train", *mlp_flags(), "--seed", str(2**63)), "--seed: 9223372036854775808 is out of range; it must be ≥ 0"),
    (("train", *mlp_flags(), "--seeds", str(2**63), "-o", "m.safetensors"), "beyond 2^63 - 1"),
    (("train", "--dataset", "synthetic", "--dataset-option", "channels=65"), "channels: 65 is out of range"),
    (("train", *mlp_flags(), "--arch-option", "depth=1001"), "depth: 1001 is out of range"),
])
def test_a_value_beyond_its_range_is_one_line_and_writes_nothing(tmp_path, monkeypatch, arguments, words):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run_cli(*arguments, *(() if "-o" in arguments else ("-o", "m.safetensors"))))
    assert words in line, line
    assert list(tmp_path.iterdir()) == []


# --- seeds ------------------------------------------------------------------------------------------------------


def test_a_derived_seed_is_the_formula_in_int64_and_a_hash_in_int64_beyond():
    for seed in (0, 1, 4, 2**31, 92_000_000_000_000):
        for epoch in (0, 1, 99_999):
            assert epoch_seed(seed, epoch) == seed * EPOCH_STRIDE + epoch  # the draws of every seed in use
        assert derive_seed(seed, 1_000_003) == seed + 1_000_003
    for seed in (93 * 10**12, INT64_MAX):
        seeds = {epoch_seed(seed, epoch) for epoch in range(1000)} | {derive_seed(seed, k) for k in range(1, 1000)}
        assert all(0 <= value <= INT64_MAX for value in seeds)
        assert len(seeds) == 1999  # the streams stay apart
    assert derive_seed(INT64_MAX) == INT64_MAX and derive_seed(INT64_MAX, 1) != derive_seed(INT64_MAX, 2)


SEEDS = [0, 2**31, 93 * 10**12, INT64_MAX]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_seed_trains_unlearns_and_builds_a_pool(tiny_run, tmp_path, seed):
    model, pooled = tmp_path / "model.safetensors", tmp_path / "pool-{seed}.safetensors"
    ok("train", *mlp_flags(width=8, epochs=2), "--seed", seed, "-o", model)
    for method in ("finetune", "neggrad+", "random-label"):  # epoch shuffles, a second stream, a relabelling
        ok("apply", "--model", tiny_run["original"], "--forget", tiny_run["forget"], "--method", method,
           "--epochs", "1", "--seed", seed, "-q", "-o", tmp_path / f"{method}.safetensors")
    first = min(seed, INT64_MAX - 1)
    ok("train", *mlp_flags(width=8, epochs=2), "--seeds", f"{first}-{first + 1}", "-o", pooled)
    assert_same_run(tmp_path / f"pool-{seed}.safetensors", model)


def test_the_largest_seed_tunes(tiny_run, tmp_path):
    ok("tune", "--model", tiny_run["original"], "--forget", tiny_run["forget"], "--method", "finetune",
       "--grid", "lr=0.01", "--grid", "epochs=1", "--max-cost", "2", "--seed", INT64_MAX, "-q",
       "-o", tmp_path / "best.yaml")
