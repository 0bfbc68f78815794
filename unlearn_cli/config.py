"""Command configuration: a dataclass per command; YAML (`--config`) sets values, flags override them.

Usage:
    config = resolve_config(TrainConfig, "cfg.yaml", {"epochs": 3})   # flags given on the command line
    config_dict(config)   # stored in the output's metadata
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from unlearn_cli.errors import UserError


def _type_name(kind) -> str:
    return getattr(kind, "__name__", str(kind).replace("typing.", ""))


def _check_value(value, kind, where: str):
    """`value` converted to the field type `kind`, or a UserError naming the field and the expected type."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is list:
        (item,) = typing.get_args(kind) or (object,)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return [_check_value(v, item, where) for v in value]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is object:
        return value
    raise UserError(f"{where}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}")


def load_yaml_config(path: str | Path | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found; check the --config path")
    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise UserError(f"{path}: malformed YAML ({reason})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise UserError(f"{path}: a config file must be a YAML mapping of option: value")
    return document


def resolve_config(cls, config_path: str | Path | None, overrides: dict):
    """Defaults of `cls`, then the YAML file, then the flags that were given (values not None)."""
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    values = {}
    for key, value in load_yaml_config(config_path).items():
        key = str(key).replace("-", "_")
        if key not in names:
            raise UserError(f"{config_path}: unknown option {key!r}; valid options: {', '.join(names)}")
        values[key] = _check_value(value, hints[key], f"{config_path}: option {key!r}")
    for key, value in overrides.items():
        if value is not None:
            values[key] = _check_value(value, hints[key], f"--{key.replace('_', '-')}")
    return cls(**values)


def config_dict(config) -> dict:
    return dataclasses.asdict(config)


def parse_options(pairs: list[str] | None, flag: str) -> dict | None:
    """`["width=256", "depth=3"]` -> {"width": 256, "depth": 3} (values read as YAML scalars)."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {pair!r}: write it as key=value, e.g. {flag} width=256")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"{flag} {pair!r}: the value is not a number, string or list") from None
    return options
