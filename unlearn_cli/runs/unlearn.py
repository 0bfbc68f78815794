"""The unlearning step `unlearn apply` and `unlearn tune` share: a method run on a parent checkpoint's model for a
forget set, within a mask or not, and the retraining its cost is measured against.

The cost cap is each command's own: `apply` refuses a run whose predicted work exceeds it (`methods.fit_to_cap`),
`tune` leaves such a candidate out and may ask for the most epochs it allows (`methods.fitted`,
`methods.most_epochs_within`); both fit retrain's recipe to it and measure against `retrain_work`.

Usage:
    from unlearn_cli.runs.unlearn import retrain_work, unlearn, unlearn_data
    data = unlearn_data(dataset, forget_set.indices, parent, device, FastPath.for_device(device, None, None, False))
    unlearned = unlearn("rft", parent.model, data, mask, method_config("rft", {"lr": 0.1}), on_step=print)
    reference = retrain_work(parent, len(data.retain))      # None: the parent records no recipe
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from unlearn_cli.cost import reference_units
from unlearn_cli.data import ImageData
from unlearn_cli.distributed import Shard, current_shard
from unlearn_cli.engine import FastPath
from unlearn_cli.io.checkpoint import Checkpoint
from unlearn_cli.localize import Mask
from unlearn_cli.methods import UnlearnData, get_method


def unlearn_data(dataset: ImageData, forget_indices: torch.Tensor, parent: Checkpoint, device: torch.device,
                 fast: FastPath, shard: Shard | None = None) -> UnlearnData:
    """The forget and retain sets of `dataset` as a method trains on them: on `device`, with the parent's training
    recipe and a fresh model of its architecture (what rft's reset and retrain start from), each epoch on
    `shard` (default: this process's own)."""
    return UnlearnData.split(dataset, forget_indices, device=device, training_config=parent.config, fast=fast,
                             shard=current_shard() if shard is None else shard, new_model=parent.new_model)


def unlearn(method: str, model: nn.Module, data: UnlearnData, mask: Mask | None, method_cfg,
            on_step: Callable[[dict], None] | None = None) -> nn.Module:
    """`model` unlearned by `method` under `method_cfg`: only the parameters `mask` selects change (every one
    without a mask). The method may train `model` in place: pass a copy to keep it. `on_step`: the training loop's
    progress."""
    data.on_step = on_step
    return get_method(method).run(model, data, mask, method_cfg)


def retrain_work(parent: Checkpoint, retain_size: int) -> int | None:
    """The work of retraining on `retain_size` examples with the parent's recipe, that an unlearning run's cost is
    measured against; None when the parent records no recipe."""
    return reference_units(parent.provenance.method, parent.config, parent.cost, retain_size)
