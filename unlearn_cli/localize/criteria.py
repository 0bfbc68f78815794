"""Criticality criteria: a score per parameter scalar, from the weights θ and a summed gradient g.

g = Σ over batches of ∇θ of the batch-mean cross-entropy, the model in eval mode; the absolute value
is taken after the sum. Batch gradients are accumulated into one buffer per parameter, so memory is
one extra copy of the parameters whatever the size of the forget set (no per-example gradients).

- `grad`                |g|          SalLoc (Fan et al. 2023, SalUn)
- `weighted-grad`       |θ ⊙ g|      DEL's criterion, CritMem's (Maini et al. 2023)
- `weight`              |θ|          forget-agnostic control (DEL paper, Table 6)
- `weighted-grad-train` |θ ⊙ g_train| with g over the whole training set: forget-agnostic control

Usage:
    scores = CRITERIA.get("weighted-grad")(model, forget)     # {name: float tensor of the parameter's shape}
    gradient = summed_gradient(model, forget.forget_batches())
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from unlearn_cli.errors import UserError
from unlearn_cli.localize.base import LocalizationData
from unlearn_cli.registry import Registry

CRITERIA: Registry = Registry("criterion")


@contextlib.contextmanager
def evaluation_with_gradients(model: nn.Module):
    """Eval mode (normalization layers use their running statistics) with every parameter requiring grad;
    the previous mode and flags come back afterwards."""
    was_training = model.training
    flags = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    try:
        yield dict(model.named_parameters())
    finally:
        model.train(was_training)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(flags[name])


def summed_gradient(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    on_step: Callable[[dict], None] | None = None, per_example: bool = False) -> dict[str, torch.Tensor]:
    """g = Σ_batches ∇θ mean-CE(batch), signed, one tensor per parameter; the model in eval mode. With
    `per_example`, the mean over examples ∇θ (1/n) Σ_i CE_i instead, which does not depend on the batch size.

    Autograd itself sums the batch gradients into `.grad` (as a training pass does); whatever `.grad`
    held before is put back afterwards.
    """
    with evaluation_with_gradients(model) as parameters:
        saved = {name: parameter.grad for name, parameter in parameters.items()}
        for parameter in parameters.values():
            parameter.grad = None
        count = 0
        try:
            for inputs, labels in batches:
                logits = model(inputs)
                loss = F.cross_entropy(logits, labels, reduction="sum" if per_example else "mean")
                loss.backward()
                count += len(labels)
                if on_step is not None:
                    mean_loss = float(loss.detach()) / (len(labels) if per_example else 1)
                    on_step({"step": count, "loss": mean_loss, "images": count,
                             "accuracy": float((logits.argmax(1) == labels).float().mean())})
            scale = 1 / max(1, count) if per_example else 1
            total = {name: torch.zeros_like(parameter) if parameter.grad is None else parameter.grad.detach() * scale
                     for name, parameter in parameters.items()}
        finally:
            for name, parameter in parameters.items():
                parameter.grad = saved[name]
    if count == 0:
        raise UserError("the forget set yields no examples; give a non-empty forget set")
    return total


@dataclass(frozen=True)
class Criterion:
    """score = combine(θ, g) per scalar, with g summed over the batches named by `gradient`."""

    combine: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    gradient: str | None  # "forget", "train" or None (no gradient needed)
    summary: str

    def __call__(self, model: nn.Module, data: LocalizationData,
                 on_step: Callable[[dict], None] | None = None) -> dict[str, torch.Tensor]:
        if self.gradient is None:
            gradients = {name: None for name, _ in model.named_parameters()}
        elif self.gradient == "train":
            if data.train_batches is None:
                raise UserError("criterion weighted-grad-train needs the training set, which was not given")
            gradients = summed_gradient(model, data.train_batches(), on_step)
        else:
            gradients = summed_gradient(model, data.forget_batches(), on_step)
        return {name: self.combine(parameter.detach(), gradients[name]) for name, parameter in model.named_parameters()}


def _register(name: str, combine, gradient: str | None, summary: str) -> None:
    CRITERIA.register(name)(Criterion(combine, gradient, summary))


_register("grad", lambda weight, gradient: gradient.abs(), "forget", "|g| (SalLoc, Fan et al. 2023)")
_register("weighted-grad", lambda weight, gradient: (weight * gradient).abs(), "forget", "|θ⊙g| (DEL; Maini et al. 2023)")
_register("weight", lambda weight, gradient: weight.abs(), None, "|θ| (forget-agnostic control)")
_register("weighted-grad-train", lambda weight, gradient: (weight * gradient).abs(), "train",
          "|θ⊙g_train|, g over the whole training set (forget-agnostic control)")


def list_criteria() -> list[str]:
    return CRITERIA.names()
