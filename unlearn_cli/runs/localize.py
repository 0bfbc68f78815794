"""Computing a mask: a localization strategy run on a model for a forget set, and the work it took.

`unlearn localize` writes the mask it computes; `unlearn tune` computes one per distinct localization among its
candidates, and counts a strategy's refusal (a budget too small to keep anything) as those candidates' failure,
with the work the strategy spent before refusing.

Usage:
    from unlearn_cli.runs.localize import MaskFailed, compute_mask, mask_steps
    settings = resolve_settings(LocalizeSettings(strategy="del", budget=0.3))
    mask, work = compute_mask(checkpoint.model, data, forget_set.indices, settings, arch=checkpoint.arch,
                              device=device, on_step=print)      # {name: bool tensor}, Work(forward, backward)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from unlearn_cli.cost import Work, WorkMeter
from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import retain_sample
from unlearn_cli.errors import UserError
from unlearn_cli.localize import CRITERIA, LocalizationData, LocalizeSettings, Mask, get_strategy


class MaskFailed(UserError):
    """A strategy's refusal, its message as it is, with the work the strategy spent before refusing."""

    def __init__(self, message: str, work: Work):
        super().__init__(message)
        self.work = work


def mask_steps(settings: LocalizeSettings, data: ImageData, forget_indices: torch.Tensor) -> int:
    """The steps `compute_mask` reports: the examples its gradient is summed over (the training set for a
    criterion on it, else the forget set)."""
    uses_train_set = settings.criterion is not None and CRITERIA.get(settings.criterion).gradient == "train"
    return data.num_train if uses_train_set else len(forget_indices)


def compute_mask(model: nn.Module, data: ImageData, forget_indices: torch.Tensor, settings: LocalizeSettings, *,
                 arch: str | None, device: torch.device, batch_size: int = 128,
                 on_step: Callable[[dict], None] | None = None) -> tuple[Mask, Work]:
    """(the mask of resolved `settings` on `model` for the training examples `forget_indices` of `data`, the work
    computing it took). A strategy may change the model it scores: pass a copy to keep one. `on_step` receives
    {"epoch": 0, "step", "total_steps", …} as the gradient is summed. A strategy's UserError is raised as
    MaskFailed, with the work spent before it."""
    settings = dataclasses.replace(settings, arch=arch)  # rules that depend on the architecture (del-reference on vit)
    if on_step is not None:
        total = mask_steps(settings, data, forget_indices)
        settings.on_step = lambda info: on_step({"epoch": 0, "total_steps": total, **info})
    forget = LocalizationData(
        forget_batches=lambda: data.batches("train", forget_indices, batch_size, device=device),
        train_batches=lambda: data.batches("train", None, batch_size, device=device),
        retain_batches=lambda: data.batches("train", retain_sample(data.num_train, forget_indices, settings.seed,
                                                                   len(forget_indices)), batch_size, device=device))
    with WorkMeter() as meter:
        try:
            mask = get_strategy(settings.strategy)(model, forget, settings)
        except UserError as error:
            raise MaskFailed(str(error), meter.work) from error
    return mask, meter.work
