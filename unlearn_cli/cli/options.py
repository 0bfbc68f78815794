"""A command's flags, built from the configuration fields that declare them (`config.option`).

A command function lists only what is its own (the output, --seeds, --config, --quiet) and takes the declared
flags as one mapping, `given`: field name -> the value typed on the command line, or None when the flag was not
given. The flag, its type, its --help text and its default text all come from the field, so a new option is one
field. `resolve_config` then lays `given` over the defaults and the YAML file.

Usage:
    @handle_errors
    @with_options(LocalizeConfig)
    def localize(given: dict, output: OutputOption, config: ConfigOption = None, quiet: QuietOption = False):
        cfg = resolve_config(LocalizeConfig, config, given, section="localize")
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import types
import typing
from typing import Annotated, Optional

import typer

from unlearn_cli.config import OPTION, Option, parse_options


def _number_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(item: dataclasses.Field, spec: Option) -> str | None:
    if spec.default_text is not None:
        return spec.default_text() if callable(spec.default_text) else spec.default_text
    if item.default is dataclasses.MISSING and item.default_factory is not dataclasses.MISSING:
        values = item.default_factory()  # a list option's values; an empty list or mapping has no default to show
        return ", ".join(_number_text(value) for value in values) if isinstance(values, list) and values else None
    if item.default is dataclasses.MISSING or item.default is None or (spec.switch and item.default is False):
        return None
    return _number_text(item.default)


def _plain_type(kind):
    """`Optional[float]` -> float; a union of several types -> str (the command line gives text)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        return options[0] if len(options) == 1 else str
    return kind


@dataclasses.dataclass(frozen=True)
class _Flag:
    """One declared flag: the typer parameter and how its raw value becomes the field's value."""

    parameter: inspect.Parameter
    convert: typing.Callable


def _flag(item: dataclasses.Field, kind, spec: Option) -> _Flag:
    kind = _plain_type(kind)
    dashed = item.name.replace("_", "-")
    names = spec.names or (f"--{dashed}",)
    help_text = spec.text()
    default = _default_text(item, spec)
    if default is not None:
        help_text = f"{help_text} (default: {default})"

    def convert(value):
        return value
    if spec.choices:
        cli_type = Optional[enum.Enum(f"{item.name}_choice", {choice: choice for choice in spec.choices}, type=str)]

        def convert(value):
            return None if value is None else value.value
    elif spec.parse is not None:
        cli_type, convert = Optional[str], spec.parse
    elif kind is bool:
        cli_type = Optional[bool]
        if not spec.names and not spec.switch:
            names = (f"--{dashed}/--no-{dashed}",)
        if spec.switch:
            def convert(value):
                return True if value else None  # a switch off is "not given": the YAML's value stands
    elif kind is dict or typing.get_origin(kind) is dict:
        cli_type = Optional[list[str]]

        def convert(pairs):
            return parse_options(pairs, names[0])
    elif typing.get_origin(kind) is list:
        cli_type = Optional[kind]

        def convert(values):
            return values or None  # none given: the YAML's list stands
    elif kind in (int, float, str):
        cli_type = Optional[kind]
    else:
        cli_type = Optional[str]
    parameter = inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation=Annotated[cli_type, typer.Option(*names, help=help_text,
                                                                              metavar=spec.metavar)])
    return _Flag(parameter, convert)


def declared_flags(*classes, exclude: tuple[str, ...] = ()) -> dict[str, _Flag]:
    """Field name -> its flag, for every field of `classes` declared with `option` (the first class declaring a
    name wins), in field order."""
    flags: dict[str, _Flag] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            spec = item.metadata.get(OPTION)
            if spec is not None and item.name not in exclude and item.name not in flags:
                flags[item.name] = _flag(item, hints[item.name], spec)
    return flags


def with_options(*classes, exclude: tuple[str, ...] = ()):
    """Add a flag for every declared field of `classes` to the decorated command; it receives them as `given`."""

    def decorate(command):
        flags = declared_flags(*classes, exclude=exclude)
        own = [parameter for parameter in inspect.signature(command, eval_str=True).parameters.values()
               if parameter.name != "given"]
        required = [parameter for parameter in own if parameter.default is inspect.Parameter.empty]
        optional = [parameter for parameter in own if parameter.default is not inspect.Parameter.empty]
        parameters = [*required, *(flag.parameter for flag in flags.values()), *optional]

        @functools.wraps(command)
        def run(**values):
            given = {name: flag.convert(values.pop(name)) for name, flag in flags.items()}
            return command(given=given, **values)

        run.__signature__ = inspect.Signature([parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                               for parameter in parameters])
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return run

    return decorate
