"""Command configuration: a dataclass per command; YAML (`--config`) sets values, flags override them.

Every value is checked at the edge, whether it came from a flag, a YAML file or a checkpoint's metadata:
its type from the dataclass (or factory) annotation, its range from `BOUNDS`, one table keyed by option
name, so `epochs` or `seed` mean the same everywhere. YAML files are read without anchors or aliases
(no expansion bombs) and within a size limit (docs/limits.md).

Every option is declared once, as a field of its dataclass: its name, type (the annotation), default and help
(`option(...)`); its range is `BOUNDS[name]`, shared by every option of that name. A command's flags, its YAML
keys and the configuration it records all come from those fields (cli/options.py builds the flags).

Usage:
    @dataclass
    class TrainConfig:
        epochs: int = option(30, "Epochs")                   # a flag --epochs and a YAML key `epochs`
        momentum: float = 0.9                                 # a YAML key only
    config = resolve_config(TrainConfig, "cfg.yaml", {"epochs": 3})   # flags given on the command line
    config_dict(config)   # stored in the output's metadata
    check_options(factory, {"width": 256}, "--arch-option")           # model / dataset options
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from unlearn_cli.errors import UserError, flag
from unlearn_cli.limits import INT64_MAX
from unlearn_cli.streams import read_input, reader


def _plain(number: float) -> str:
    whole = isinstance(number, int) or (float(number).is_integer() and abs(number) < 1e15)
    return f"{int(number):,}" if whole else f"{number:g}"


@dataclass(frozen=True)
class Bound:
    """The range of a numeric option: minimum (inclusive, or exclusive when `above`) and maximum."""

    minimum: float | None = None
    maximum: float | None = None
    above: bool = False

    def describe(self) -> str:
        low = None if self.minimum is None else f"{'>' if self.above else '≥'} {_plain(self.minimum)}"
        high = None if self.maximum is None else f"≤ {_plain(self.maximum)}"
        return " and ".join(part for part in (low, high) if part)

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum


LARGEST = 1e38  # the largest real an option takes: the parameters are float32 (at most about 3.4e38), and a learning
# rate, a weight or a temperature beyond their range cannot be multiplied into them
FRACTION = Bound(0, 1, above=True)
COUNT = Bound(1, 2**31 - 1)
POSITIVE = Bound(0, LARGEST, above=True)
NON_NEGATIVE = Bound(0, LARGEST)
# option name -> its range, for every command, method, model and dataset option that is a number
BOUNDS: dict[str, Bound] = {
    "seed": Bound(0, INT64_MAX), "tune_seed": Bound(0, INT64_MAX), "epochs": Bound(1, 100_000), "max_steps": COUNT, "batch_size": COUNT,
    "lr": POSITIVE, "momentum": Bound(0, 1), "weight_decay": NON_NEGATIVE, "final_lr_fraction": Bound(0, 1),
    "budget": FRACTION, "fraction": FRACTION, "max_cost": POSITIVE, "topk": FRACTION, "max_iterations": COUNT,
    "beta": Bound(0, 1), "gamma": NON_NEGATIVE, "max_epochs": Bound(0, 100_000), "temperature": POSITIVE,
    "kl_weight": NON_NEGATIVE, "ce_weight": NON_NEGATIVE, "alpha": NON_NEGATIVE, "damping": POSITIVE,
    "validation_sets": Bound(1, 1000),  # tune's validation forget sets
    "allowance": Bound(0, 100), "extend": Bound(0, 100),  # tune: points of accuracy; steps beyond a grid's edge
    "control_size": COUNT,  # audit: also at most the retain and test examples there are (runs/audit.py)
    "num_samples": COUNT, "selection_weight": POSITIVE, "dampening_constant": NON_NEGATIVE,
    "init_rate": FRACTION, "kept_rate": Bound(0, 1),  # msg
    # the relearning test of evaluate and audit (docs/relearn.md); a part of 1 passes here and is refused where
    # the forget set's size is known (it leaves no example to score)
    "relearn_part": FRACTION, "relearn_lr": POSITIVE, "relearn_steps": Bound(1, 100_000),
    "relearn_batch_size": COUNT, "relearn_seed": Bound(0, INT64_MAX),
    # models
    "width": COUNT, "depth": Bound(0, 1000), "dim": COUNT, "heads": COUNT, "mlp_dim": COUNT, "patch": COUNT, "dim_head": COUNT,
    # datasets
    "train_subset": COUNT, "num_train": COUNT, "num_test": COUNT, "num_classes": Bound(2, 1_000_000),
    "channels": Bound(1, 64), "size": Bound(1, 4096), "image_size": Bound(1, 4096), "noise": NON_NEGATIVE,
    "num_workers": Bound(0, 256),
    "threads": Bound(1, 1024),  # torch's CPU threads
}


@dataclass(frozen=True)
class Option:
    """How a configuration field is given on the command line (a field without one is a YAML key only)."""

    help: str | Callable[[], str]  # a callable when the text lists a registry filled after the field is declared
    names: tuple[str, ...] = ()  # the flag and its short form; () : --field-name
    parse: Callable | None = None  # flag text -> value, for a one-line error instead of a usage error
    switch: bool = False  # a flag that only turns on (--allow-mismatch); otherwise booleans get --x/--no-x
    default_text: str | Callable[[], str] | None = None  # what --help says of the default; None: the field's
    choices: tuple[str, ...] = ()  # the only values the flag takes (checked as the command line is parsed)
    metavar: str | None = None  # the value's name in --help

    def text(self) -> str:
        return self.help() if callable(self.help) else self.help


OPTION = "option"  # the metadata key of a field's Option


def option(default, help: str | Callable[[], str], *names: str, parse: Callable | None = None, switch: bool = False,
           default_text: str | Callable[[], str] | None = None, choices: tuple[str, ...] = (),
           metavar: str | None = None):
    """A configuration field that is also a command-line flag: its default (`dict` or `list`: an empty one of its
    own for each config; a list of values: a copy of it for each config), its --help text and its flag names
    (default: --field-name)."""
    metadata = {OPTION: Option(help, names, parse, switch, default_text, choices, metavar)}
    if default in (dict, list):
        return dataclasses.field(default_factory=default, metadata=metadata)
    if isinstance(default, list):
        return dataclasses.field(default_factory=default.copy, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def seed_option(default: int = 0):
    return option(default, "Random seed")


def device_option():
    return option("auto", "auto, cpu, cuda or mps")


THREADS_VARIABLE = "UNLEARN_THREADS"


def parse_threads(text: str | None, named: str = "--threads ", example: str = "--threads 1") -> int | None:
    """A thread count given as text (a flag, the environment); a UserError naming `named` when it is no integer."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"{named}{text[:30]!r}: not a whole number; give the number of CPU threads, e.g. "
                        f"{example}") from None


def parallel_make(makeflags: str) -> bool:
    """Whether MAKEFLAGS comes from a make that runs jobs side by side: `-j`, `-jN` with N ≥ 2, or a jobserver."""
    jobs = re.findall(r"(?:^|\s)-j(\d*)(?=\s|$)", makeflags)
    return "--jobserver-" in makeflags or any(count != "1" for count in jobs)


def default_threads(environment=os.environ) -> int | None:
    """The thread count when --threads is not given: $UNLEARN_THREADS; else 1 under a parallel make, whose jobs
    would each take every core; else None (torch's own default, which OMP_NUM_THREADS sets)."""
    text = environment.get(THREADS_VARIABLE, "").strip()
    if text:
        count = parse_threads(text, f"{THREADS_VARIABLE}=", f"{THREADS_VARIABLE}=1")
        return check_range("threads", count, THREADS_VARIABLE)
    return 1 if parallel_make(environment.get("MAKEFLAGS", "")) else None


def threads_option():
    return option(None, "CPU threads torch computes with", parse=parse_threads,
                  metavar="N", default_text=f"${THREADS_VARIABLE}; else 1 under make -j; else torch's default")


def data_root_option():
    return option(None, "Folder holding the dataset files.")


def amp_option():
    return option(None, "bf16 autocast of forward passes", default_text="on for cuda, off otherwise")


def channels_last_option():
    return option(None, "Channels-last memory layout for convolutions", default_text="on for cuda, off otherwise")


def compile_option():
    return option(False, "torch.compile the model for training")


def stacked_option(what: str):
    """A pool command's --stacked/--no-stacked; `what` says what it does at once."""
    return option(None, f"With --seeds: {what}, parameters stacked, one optimizer step for all",
                  default_text="on for cuda when they fit in half of the free memory, off otherwise")


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


def check_range(name: str, value, where: str):
    """`value` when option `name` has no bound or lies within it; else a UserError naming the range."""
    bound = BOUNDS.get(name)
    if bound is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and not bound.holds(value):
        raise UserError(f"{where}: {value!r} is out of range; it must be {bound.describe()}")
    return value


def _checked_field(name: str, value, kind, where: str):
    value = _check_value(value, kind, where)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not (item is None or isinstance(item, (bool, int, float, str))):
                raise UserError(f"{where}: {key!r}: {item!r:.40} is not a number, string or boolean; "
                                f"write it as key: value")
    if isinstance(value, list):
        return [check_range(name, item, where) for item in value]
    return check_range(name, value, where)


def check_options(factory, options: dict, where: str) -> dict:
    """Options for a model or dataset factory, each checked against its annotation and its range."""
    hints = typing.get_type_hints(factory)
    accepted = inspect.signature(factory).parameters
    return {key: _checked_field(key, value, hints.get(key, object), f"{where} {key}") if key in accepted else value
            for key, value in options.items()}


class _PlainLoader(yaml.SafeLoader):
    """yaml's safe loader without anchors and aliases, so a small file cannot expand into a huge one."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError("anchors and aliases (&name, *name) are not accepted; write the values out")
        return super().compose_node(parent, index)


# YAML 1.1 reads `1e-3` and `1.0e38` (no dot, or no sign in the exponent) as strings; read them as numbers, as
# YAML 1.2, Python and the command line's own float flags do
_PlainLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def parse_yaml(text: str):
    """A YAML document (or scalar) parsed with `_PlainLoader`; yaml.YAMLError when malformed."""
    return yaml.load(text, Loader=_PlainLoader)  # noqa: S506 (a SafeLoader subclass)


SECTIONS = ("split", "train", "localize", "apply", "calibrate", "evaluate", "report", "tune", "audit")  # commands a file may hold options for


@reader("config file")
def load_yaml_config(path: str | Path | None, section: str | None = None) -> dict:
    """The options in YAML file `path` for command `section`.

    A file may hold the options of one command (`epochs: 8`), or of several, one mapping per command
    (`localize: {budget: 0.3}` and `apply: {method: rft}`, as `unlearn tune` writes): then each command
    reads its own section and ignores the others.
    """
    if path is None:
        return {}
    try:
        document = parse_yaml(read_input(path, "config file", limit_name="config_bytes").decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        reason = str(error).splitlines()[0] if str(error) else "nested too deeply"
        raise UserError(f"{path}: malformed YAML ({reason})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise UserError(f"{path}: a config file must be a YAML mapping of option: value")
    if any(key in SECTIONS and isinstance(value, dict) for key, value in document.items()):
        stray = [str(key) for key, value in document.items() if not (key in SECTIONS and isinstance(value, dict))]
        if stray:
            raise UserError(f"{path}: option {stray[0]!r} stands outside the command sections "
                            f"({', '.join(k for k in document if k not in stray)}); move it into one")
        return document.get(section, {}) if section else {}
    return document


def resolve_config(cls, config_path: str | Path | None, overrides: dict, document: dict | None = None,
                   section: str | None = None):
    """Defaults of `cls`, then the YAML file (its `section` when it has one per command), then the flags that
    were given (values not None).

    `document` holds the file's values when the caller has read it already (one file setting two configs,
    as `apply`'s options and its method's); errors still name `config_path` and the key.
    """
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    values = {}
    for key, value in (load_yaml_config(config_path, section) if document is None else document).items():
        key = str(key).replace("-", "_")
        if key not in names:
            valid = f"valid options: {', '.join(names)}" if names else (
                "this command takes no options from a config file (its files are given on the command line)")
            raise UserError(f"{config_path}: unknown option {key!r}; {valid}")
        values[key] = _checked_field(key, value, hints[key], f"{config_path}: option {key!r}")
    for key, value in overrides.items():
        if value is not None:
            values[key] = _checked_field(key, value, hints[key], flag(key))
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
            options[key.strip().replace("-", "_")] = parse_yaml(text)
        except yaml.YAMLError:
            raise UserError(f"{flag} {pair!r}: the value is not a number, string or list") from None
    return options
