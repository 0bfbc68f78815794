"""MSG's selection (the second-placed entry of the NeurIPS 2023 machine unlearning challenge, as ported with its
competition settings in Deep Unlearn, Cadet et al. 2024, github.com/xcadet/deepunlearn `munl/unlearning/kgltop2.py`):
in every layer it re-initializes, the share `rate` of the weights with the smallest |g|, where

    g = ∇θ CE(retain sample) − ∇θ CE(forget set),

the retain sample as large as the forget set and drawn at random from the retain set. A weight the two losses pull
the same way, or barely at all, is one the retain set does not need kept and the forget set does not single out:
re-initializing it costs the retain set least. The selection is the opposite of DEL's, which takes the weights
most critical to the forget set.

Here each CE is the mean over its examples (the entry sums batch means over batches of 64; the two agree up to the
weight of a last, partial batch and a factor that does not change a ranking). The model is scored in eval mode.

Which layers: the entry re-initializes the 2-D convolutions' weights (ResNet-18). This module takes those where
they hold more scalars than the linear layers' weights (a conv net); otherwise (an MLP, or a ViT whose only
convolution is its patch embedding) the linear layers' weights, an adaptation. Biases, normalization layers and
the other layers are never selected.

Usage:
    gap = contrast_gradient(model, forget_batches, retain_batches)
    selected = smallest_share(gap, reinitialized_weights(model), rate=0.3)     # {name: bool tensor}
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from unlearn_cli.localize.base import Mask
from unlearn_cli.localize.budget import select_prefix
from unlearn_cli.localize.criteria import summed_gradient

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def reinitialized_weights(model: nn.Module) -> dict[str, nn.Module]:
    """{weight name: its module} for the layers MSG re-initializes: the 2-D convolutions where their weights hold
    more scalars than the linear layers' weights, otherwise the linear layers."""
    layers = {kind: {f"{name}.weight" if name else "weight": module for name, module in model.named_modules()
                     if isinstance(module, kind) and getattr(module, "weight", None) is not None}
              for kind in (nn.Conv2d, nn.Linear)}

    def scalars(kind) -> int:
        return sum(module.weight.numel() for module in layers[kind].values())

    return layers[nn.Conv2d] if scalars(nn.Conv2d) > scalars(nn.Linear) else layers[nn.Linear]


def contrast_gradient(model: nn.Module, forget_batches: Batches, retain_batches: Batches,
                      on_step: Callable[[dict], None] | None = None) -> dict[str, torch.Tensor]:
    """g = ∇ mean-CE(retain sample) − ∇ mean-CE(forget set), one tensor per parameter."""
    retain = summed_gradient(model, retain_batches, per_example=True)
    forget = summed_gradient(model, forget_batches, on_step, per_example=True)
    return {name: retain[name] - forget[name] for name in retain}


def smallest_share(gradient: dict[str, torch.Tensor], counts: dict[str, int]) -> Mask:
    """{name: bool tensor} with, in each tensor named in `counts`, its `counts[name]` entries of smallest |g| (equal
    values: the earliest), and nothing elsewhere."""
    mask = {}
    for name, value in gradient.items():
        selected = torch.zeros(value.numel(), dtype=torch.bool)
        if counts.get(name):
            scores = -value.detach().abs().flatten().double().cpu()
            selected = select_prefix(scores, torch.ones(len(scores), dtype=torch.long), counts[name])
        mask[name] = selected.reshape(value.shape)
    return mask


def entry_counts(layers: dict[str, nn.Module], rate: float) -> dict[str, int]:
    """Per layer, round(rate × its weights), as the entry counts them."""
    return {name: round(rate * module.weight.numel()) for name, module in layers.items()}


def budget_counts(layers: dict[str, nn.Module], budget_scalars: int) -> dict[str, int]:
    """Per layer, floor(rate × its weights) with one rate for every layer, rate = `budget_scalars` / their weights:
    the entry's rule at a budget given as a number of scalars (at most that many in all)."""
    eligible = sum(module.weight.numel() for module in layers.values())
    return {name: math.floor(budget_scalars * module.weight.numel() / eligible) for name, module in layers.items()}
