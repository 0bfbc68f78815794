"""Unlearning methods (README, "Unlearning methods"): one module each, one registry, one signature `fn(model, data, mask, cfg) -> model`.

Every finetune-like method prepares the model (rft's reset) and returns its `MethodLoop`: a loss function and a
batch schedule that `engine.run_loop` runs and masks, or that a pool's models run stacked; the training-free
ones (ssd, iu) restrict their change with `engine.restrict_to_mask`.

Usage:
    data = UnlearnData.split(dataset, forget_indices, new_model=lambda: create_model("mlp", 10, (1, 8, 8)))
    cfg = method_config("rft", {"epochs": 8, "lr": 0.05})
    model = get_method("rft").run(model, data, mask, cfg)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from unlearn_cli import names
from unlearn_cli.config import resolve_config
from unlearn_cli.errors import UserError, flag
from unlearn_cli.method_configs import METHOD_CONFIGS, check_schedule
from unlearn_cli.registry import Registry

METHODS: Registry = Registry("method")


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable  # (model, data: UnlearnData, mask | None, cfg) -> model
    config_class: type
    summary: str  # one line for --help
    uses_mask: bool = True  # False: the method ignores --mask (retrain; msg, which selects what it resets itself)
    excludes_forget_set: bool = False  # True: the output is trained without the forget set (an oracle)
    loop: Callable | None = None  # finetune-like: (model, data, mask, cfg) -> MethodLoop, the model prepared
    stacks: bool = False  # its loop's loss is the plain cross-entropy, which a stack computes: a pool's models can
    # run it stacked (the one place this is said; a registry test checks it against every loop's loss)
    work: Callable | None = None  # (cfg, SetSizes) -> cost.Work: what a run with cfg forwards and back-propagates
    fit: Callable | None = None  # (cfg, cap) -> cfg run within `cap` × retraining (retrain: its recipe compressed)
    conv_only: bool = False  # True: refuses a model without 2-D convolutions (ct), in one line


def _method(name: str, run: Callable, **flags) -> Method:
    """The registry entry of method `name`: its config (configs.METHOD_CONFIGS) and --help line (names.METHODS) are
    declared torch-free, so `apply --help` lists them without importing the methods."""
    return Method(name, run, METHOD_CONFIGS[name], names.METHODS[name], **flags)


def register_method(name: str, **flags) -> Callable:
    """Decorator: register `fn(model, data, mask, cfg) -> model` under `name`."""

    def decorator(fn: Callable) -> Callable:
        METHODS.register(name)(_method(name, fn, **flags))
        return fn

    return decorator


def register_loop_method(name: str, **flags) -> Callable:
    """Decorator: register a finetune-like method, `fn(model, data, mask, cfg) -> MethodLoop`, which prepares the
    model and returns its loop; the method's `run` runs that loop on the model."""

    def decorator(fn: Callable) -> Callable:
        def run(model, data, mask, cfg):  # a method that ignores masks (msg) trains whatever one says
            return fn(model, data, mask, cfg).run(model, data, mask if flags.get("uses_mask", True) else None)

        METHODS.register(name)(_method(name, run, loop=fn, **flags))
        return fn

    return decorator


def fitted(name: str, cfg, sizes, localize_units: int | None, reference_units: int, cap: float):
    """(cfg under a cost cap of `cap` × `reference_units`, the work `apply` will record for it, whether that is within
    the cap). A method that can fit itself to a cap (retrain: its recipe compressed to it) is fitted and always
    within it; any other is returned as it is."""
    method = get_method(name)
    if method.fit is not None:
        cfg = method.fit(cfg, cap)
    predicted = pipeline_work(method.work(cfg, sizes), sizes, localize_units)
    return cfg, predicted, method.fit is not None or predicted <= cap * reference_units


def fit_to_cap(name: str, cfg, sizes, localize_units: int | None, reference_units: int, cap: float):
    """`fitted`'s cfg and predicted work; a UserError when the run would exceed the cap."""
    cfg, predicted, within = fitted(name, cfg, sizes, localize_units, reference_units, cap)
    if not within:
        raise UserError(f"{name} with these settings would cost {predicted / reference_units:.3f}× retraining, above "
                        f"the cap of {cap:g}; lower {flag('epochs')} (or {flag('max_steps')}), or raise {flag('max_cost')}")
    return cfg, predicted


def most_epochs_within(name: str, cfg, sizes, localize_units: int | None, budget_units: float) -> int:
    """The most epochs (0 when not even one fits) with which method `name`'s predicted work stays within
    `budget_units`, the other settings of `cfg` as they are."""
    method = get_method(name)

    def fits(epochs: int) -> bool:
        return pipeline_work(method.work(dataclasses.replace(cfg, epochs=epochs), sizes), sizes,
                             localize_units) <= budget_units

    low, high = 0, 100_000  # the largest epochs that fit lies in [low, high]; the work grows with epochs
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def list_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> Method:
    try:
        return METHODS.get(name)
    except ValueError as error:
        raise UserError(str(error)) from None


def method_options(name: str) -> list[str]:
    return [field.name for field in dataclasses.fields(get_method(name).config_class)]


def method_config(name: str, values: dict, config_path: str | None = None, from_file: dict | None = None):
    """The config dataclass of method `name`: defaults, then `from_file` (the values of YAML file `config_path`),
    then `values` (flags; None keeps what was there)."""
    options = method_options(name)
    for key in [*(from_file or {}), *(key for key, value in values.items() if value is not None)]:
        if key not in options:
            origin = f"{config_path}: " if key in (from_file or {}) else ""
            raise UserError(f"{origin}method {name!r} has no option {key!r}; its options are: {', '.join(options)}")
    config = resolve_config(get_method(name).config_class, config_path, values, document=from_file or {})
    if hasattr(config, "schedule"):
        check_schedule(config.schedule)
    return config


from unlearn_cli.methods._common import (MethodLoop, SetSizes, UnlearnData, pipeline_work,  # noqa: E402,F401
                                         recovery_sample)
from unlearn_cli.methods import (finetune, neggrad, neggrad_plus, random_label, l1_sparse, rft, scrub,  # noqa: E402,F401
                                 ssd, iu, retrain, ct, msg)
