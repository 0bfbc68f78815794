"""`retrain`: train the architecture from scratch on the retain set with the training recipe — the oracle,
for completeness. It ignores any mask. Epochs and learning rate default to the parent checkpoint's
training recipe (30 epochs, lr 0.1 when the parent does not record one); with the parent's seed and
batch size the result equals `unlearn train --exclude FORGET`.

Usage:
    unlearn apply --model m.safetensors --forget f.json --method retrain -o oracle.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unlearn_cli.engine import seed_everything, train_classifier
from unlearn_cli.methods import register_method
from unlearn_cli.methods._common import LoopConfig, loop_settings


@dataclass
class RetrainConfig(LoopConfig):
    epochs: Optional[int] = None  # None: the parent's training epochs (else 30)
    lr: Optional[float] = None  # None: the parent's training learning rate (else 0.1)


@register_method("retrain", RetrainConfig, "train from scratch on the retain set (the oracle; ignores --mask)",
                 uses_mask=False, excludes_forget_set=True)
def retrain(model, data, mask, cfg: RetrainConfig):
    recipe = data.training_config
    cfg.epochs = cfg.epochs if cfg.epochs is not None else int(recipe.get("epochs") or 30)
    cfg.lr = cfg.lr if cfg.lr is not None else float(recipe.get("lr") or 0.1)  # the resolved values are recorded
    seed_everything(cfg.seed)
    fresh = data.new_model().to(data.device)
    train_classifier(fresh, data.dataset, data.retain, loop_settings(cfg), cfg.batch_size, cfg.seed, data.device,
                     on_step=data.on_step, fast=data.fast)
    return fresh
