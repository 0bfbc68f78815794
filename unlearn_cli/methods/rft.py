"""`rft` (Reset + Finetune): reset the masked parameters to a fresh, seeded default initialization of their
layer, then finetune them and the classifier head on the retain set, cosine down to 0.01·lr.
DEL = `localize --strategy del` + this (the paper's method; Goel et al. 2022's EU-k is `deepest` + this).

The defaults, lr 0.1 (the training default) for 20 epochs, are for the small CPU models: measured on digits
with the `mlp` (width 1024 or 256) and the `cnn`, DEL masks at budgets 0.1-0.5, they bring forget and test
accuracy to within a few points of the oracle's. The paper's values for ResNet-18 on CIFAR-10 are lr 0.015 and
30 epochs; on digits (about 11 optimizer steps an epoch) lr 0.015 leaves the reset model far from the oracle
(the 2×1024 MLP, budget 0.3: 63% test accuracy after 10 epochs, 90% after 30, the oracle's 98%). The recipes in
examples/ pass lr and epochs explicitly (configs/methods/del.yaml; the paper's values for the GPU settings).
Without a mask everything is reset, which makes it a retrain from scratch with these hyperparameters.

Usage:
    unlearn localize --model m.safetensors --forget f.json --strategy del --budget 0.3 -o - \
      | unlearn apply --model m.safetensors --forget f.json --method rft --mask - -o del.safetensors
"""

from __future__ import annotations

import torch

from unlearn_cli.engine import cross_entropy_loss, restrict_to_mask
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, fresh_initialization, loop_work, method_loop
from unlearn_cli.method_configs import RFTConfig
from unlearn_cli.models import classifier_head_names


@torch.no_grad()
def reset_masked(model, data, mask, seed: int) -> None:
    """Masked entries take the values of a freshly initialized copy; everything else stays as it was."""
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    fresh = dict(fresh_initialization(data, seed).named_parameters())
    for name, parameter in model.named_parameters():
        parameter.copy_(fresh[name])
    restrict_to_mask(model, before, mask)


@register_loop_method("rft", stacks=True, work=lambda cfg, sizes: loop_work(cfg, sizes.retain))
def rft(model, data, mask, cfg: RFTConfig):
    reset_masked(model, data, mask, cfg.seed)
    head = classifier_head_names(model) if cfg.train_head else []
    return method_loop(cfg, cross_entropy_loss, *epoch_batches(data, data.retain, cfg), always_trainable=head)
