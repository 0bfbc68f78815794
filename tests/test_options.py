"""Flags built from declared configuration fields (config.option, cli/options.with_options): one declaration gives
the flag, its type, its help with the default, and the value `resolve_config` sees."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from unlearn_cli.cli.apply import METHOD_FLAGS, ApplyConfig
from unlearn_cli.cli.options import declared_flags, with_options
from unlearn_cli.config import OPTION, option, resolve_config
from unlearn_cli.localize import SEARCHABLE, LocalizeOptions, LocalizeSettings
from unlearn_cli.methods import get_method, list_methods


@dataclass
class Toy:
    name: str = option("alpha", "The name", "--name", "-n")
    rate: float = option(0.5, "A rate")
    count: Optional[int] = option(None, "A count")
    loud: bool = option(False, "Turn it up", switch=True)
    fast: Optional[bool] = option(None, "Go fast", default_text="on for cuda")
    pairs: dict = option(dict, "key=value", "--pair")
    shape: str = option("round", "A shape", choices=("round", "square"))
    level: Optional[float] = option(None, "A level", parse=lambda text: None if text is None else float(text) * 2)
    hidden: int = 3  # a YAML key only


def _toy_app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @with_options(Toy)
    def toy(given: dict, output: str = typer.Option(..., "--output")):
        seen.append((dict(given), output, resolve_config(Toy, None, given)))

    return app


def _run(*args: str):
    seen: list = []
    result = CliRunner().invoke(_toy_app(seen), list(args))
    return result, seen


def test_no_flag_given_is_none_for_every_declared_field_and_the_defaults_stand():
    result, seen = _run("--output", "o")
    assert result.exit_code == 0, result.output
    given, output, cfg = seen[0]
    assert output == "o"
    assert given == {name: None for name in ("name", "rate", "count", "loud", "fast", "pairs", "shape", "level")}
    assert cfg == Toy()


def test_each_kind_of_flag_reaches_the_config():
    result, seen = _run("--output", "o", "-n", "beta", "--rate", "0.25", "--count", "4", "--loud", "--no-fast",
                        "--pair", "a=1", "--pair", "b=x", "--shape", "square", "--level", "1.5")
    assert result.exit_code == 0, result.output
    assert seen[0][2] == Toy(name="beta", rate=0.25, count=4, loud=True, fast=False, pairs={"a": 1, "b": "x"},
                             shape="square", level=3.0, hidden=3)


def test_a_value_outside_the_choices_is_a_usage_error():
    result, seen = _run("--output", "o", "--shape", "oval")
    assert result.exit_code == 2 and not seen


def test_help_shows_each_default_once_and_no_flag_for_a_yaml_only_key():
    flags = declared_flags(Toy)
    assert "hidden" not in flags
    helps = {name: flag.parameter.annotation.__metadata__[0].help for name, flag in flags.items()}
    assert helps == {"name": "The name (default: alpha)", "rate": "A rate (default: 0.5)", "count": "A count",
                     "loud": "Turn it up", "fast": "Go fast (default: on for cuda)", "pairs": "key=value",
                     "shape": "A shape (default: round)", "level": "A level"}


def test_a_switch_off_leaves_the_yaml_value_standing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loud: true\n")
    assert resolve_config(Toy, str(path), {"loud": None}).loud is True


def test_the_localization_options_are_declared_once():
    # the settings, the command's config and tune's grid keys all come from LocalizeOptions
    own = {item.name for item in dataclasses.fields(LocalizeOptions)}
    assert own <= {item.name for item in dataclasses.fields(LocalizeSettings)}
    assert set(SEARCHABLE) == own - {"strategy", "seed"}
    assert all(OPTION in item.metadata for item in dataclasses.fields(LocalizeOptions))


def test_apply_flags_are_apply_options_or_options_of_every_method_that_takes_them():
    flags = declared_flags(ApplyConfig, *METHOD_FLAGS)
    method_flags = set(flags) - {item.name for item in dataclasses.fields(ApplyConfig)}
    assert method_flags == {"seed", "batch_size", "epochs", "lr", "momentum", "weight_decay", "max_steps",
                            "freeze_bn", "train_head"}
    for name in method_flags:  # each names an option of at least one method, so no flag is dead
        assert any(name in {item.name for item in dataclasses.fields(get_method(method).config_class)}
                   for method in list_methods()), name


@pytest.mark.parametrize("name, expected", [("lr", "per method, e.g. rft 0.1"), ("epochs", "per method, e.g. rft 20")])
def test_a_default_that_differs_per_method_says_so(name, expected):
    help_text = declared_flags(*METHOD_FLAGS)[name].parameter.annotation.__metadata__[0].help
    assert help_text.endswith(f"(default: {expected})")
