"""`ssd` (Foster et al. 2024, "Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening"):
training-free. Diagonal Fisher importances — the mean over batches of the squared batch-mean gradient —
on the forget set (I_f) and the full training set (I_D); where I_f > α·I_D: θ ← θ·min(λ·I_D / I_f, 1).
With a mask only masked entries may change.

Usage:
    unlearn apply --model m.safetensors --forget f.json --method ssd --param selection_weight=10 -o out.safetensors
"""

from __future__ import annotations

import torch

from unlearn_cli.cost import trained
from unlearn_cli.engine import restrict_to_mask
from unlearn_cli.methods import register_method
from unlearn_cli.methods._common import batch_gradients
from unlearn_cli.method_configs import SSDConfig


def fisher_importance(model, batches) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared batch-mean cross-entropy gradient, per parameter scalar."""
    total, count = None, 0
    for _, gradients in batch_gradients(model, batches):
        squared = {name: gradient.pow(2) for name, gradient in gradients.items()}
        total = squared if total is None else {name: total[name] + squared[name] for name in total}
        count += 1
    return {name: value / max(1, count) for name, value in total.items()}


@torch.no_grad()
def dampen(model, forget_importance, train_importance, selection_weight: float, dampening_constant: float) -> None:
    for name, parameter in model.named_parameters():
        forget, train = forget_importance[name], train_importance[name]
        selected = forget > selection_weight * train
        factor = (dampening_constant * train / forget).clamp(max=1.0)
        parameter.copy_(torch.where(selected, parameter * factor, parameter))


@register_method("ssd", work=lambda cfg, sizes: trained(sizes.forget + sizes.train))  # the two Fisher diagonals
def ssd(model, data, mask, cfg: SSDConfig):
    def batches(indices):
        return data.dataset.batches("train", indices, cfg.batch_size, device=data.device)

    with torch.enable_grad():
        forget_importance = fisher_importance(model, batches(data.forget))
        train_importance = fisher_importance(model, batches(None))
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    dampen(model, forget_importance, train_importance, cfg.selection_weight, cfg.dampening_constant)
    restrict_to_mask(model, before, mask)
    return model
