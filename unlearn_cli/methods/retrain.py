"""`retrain`: train the architecture from scratch on the retain set with the training recipe — the oracle,
for completeness, and at a fraction of the recipe the baseline every unlearning method must beat (`retrain @ F`).
It ignores any mask. Epochs, learning rate, batch size, momentum and weight decay default to the parent
checkpoint's training recipe (30 epochs, lr 0.1 when the parent does not record one); with the parent's seed the
result equals `unlearn train --exclude FORGET`.

`fraction` F runs the recipe compressed to F of its optimizer steps: the whole learning-rate schedule over the
shorter run, not the recipe cut short (`apply --max-cost F` sets it), so with F = 0.5 of a 4-epoch recipe the
result equals `unlearn train --exclude FORGET --epochs 2`.

Usage:
    unlearn apply --model m.safetensors --forget f.json --method retrain -o oracle.safetensors
    unlearn apply --model m.safetensors --forget f.json --method retrain --max-cost 0.1 -o retrain-0.1.safetensors
"""

from __future__ import annotations

import dataclasses
import math

from unlearn_cli.cost import Work, loop_examples, trained
from unlearn_cli.engine import seed_everything, train_classifier
from unlearn_cli.errors import UserError
from unlearn_cli.methods import register_method
from unlearn_cli.methods._common import SetSizes, loop_settings
from unlearn_cli.method_configs import RetrainConfig

RECIPE_DEFAULTS = {"epochs": 30, "lr": 0.1, "batch_size": 128, "momentum": 0.9, "weight_decay": 0.0}


def resolved(cfg: RetrainConfig, recipe: dict, retain_size: int) -> RetrainConfig:
    """cfg with every unset option taken from the parent's `recipe`, and `fraction` turned into epochs and a step
    cap (at least one step)."""
    values = {key: getattr(cfg, key) if getattr(cfg, key) is not None
              else type(default)(recipe[key] if recipe.get(key) is not None else default)
              for key, default in RECIPE_DEFAULTS.items()}
    cfg = dataclasses.replace(cfg, **values)
    if cfg.fraction is None:
        return cfg
    if not 0 < cfg.fraction <= 1:
        raise UserError(f"retrain: fraction {cfg.fraction!r} must lie in (0, 1]: the share of the recipe to run")
    steps_per_epoch = math.ceil(retain_size / cfg.batch_size)
    steps = max(1, round(cfg.fraction * cfg.epochs * steps_per_epoch))
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    return dataclasses.replace(cfg, epochs=math.ceil(steps / steps_per_epoch), max_steps=steps)


def retrain_work(cfg: RetrainConfig, sizes: SetSizes) -> Work:
    cfg = resolved(cfg, sizes.recipe, sizes.retain)
    return trained(loop_examples(sizes.retain, cfg.batch_size, cfg.epochs, cfg.max_steps))


@register_method("retrain", uses_mask=False, excludes_forget_set=True, work=retrain_work,
                 fit=lambda cfg, cap: cfg if cfg.fraction is not None else dataclasses.replace(cfg, fraction=min(1.0, cap)))
def retrain(model, data, mask, cfg: RetrainConfig):
    run = resolved(cfg, data.training_config, len(data.retain))
    for item in dataclasses.fields(cfg):  # the resolved values are recorded
        setattr(cfg, item.name, getattr(run, item.name))
    seed_everything(cfg.seed)
    fresh = data.new_model().to(data.device)
    train_classifier(fresh, data.dataset, data.retain, loop_settings(cfg), cfg.batch_size, cfg.seed, data.device,
                     on_step=data.on_step, fast=data.fast)
    return fresh
