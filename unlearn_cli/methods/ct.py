"""`ct` (Conv Transpose, the fifth-placed entry of the NeurIPS 2023 machine unlearning challenge, as ported with its
competition settings in Deep Unlearn, Cadet et al. 2024, github.com/xcadet/deepunlearn `munl/unlearning/kgltop5.py`):
transpose every 2-D convolution kernel (swap its two spatial axes, θ[o, i, h, w] ← θ[o, i, w, h]), then finetune
the whole model on the retain set with cross-entropy: SGD, momentum 0.9, weight decay 5e-4, batch 64, lr 0.001 on a
cosine schedule for 3 epochs (the entry's values for ResNet-18 at 32×32; its schedule steps once an epoch, this loop's
every batch). The transpose keeps what a kernel responds to and breaks where it looks, so the finetuning rebuilds
the features from the retain set alone.

It is a conv-net method: a model without a 2-D convolution, or with a kernel that is not square (a transpose would
change its shape), is refused. With a mask only masked entries change, the transpose included.

Usage:
    unlearn apply --model cnn.safetensors --forget f.json --method ct -o out.safetensors
"""

from __future__ import annotations

import torch
from torch import nn

from unlearn_cli.engine import cross_entropy_loss, restrict_to_mask
from unlearn_cli.errors import UserError
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, loop_work, method_loop
from unlearn_cli.method_configs import CTConfig


def square_convolutions(model: nn.Module) -> list[nn.Conv2d]:
    """The model's 2-D convolutions; a UserError when it has none or one with a kernel that is not square."""
    convolutions = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise UserError("method ct transposes 2-D convolution kernels and this model has none; use a conv net "
                        "(cnn, resnet18, resnet50, vit's patch embedding) or another method")
    for name, module in convolutions:
        height, width = module.kernel_size
        if height != width:
            raise UserError(f"method ct: {name} has a {height}×{width} kernel, which a transpose cannot keep in shape; "
                            f"use a model with square kernels or another method")
    return [module for _, module in convolutions]


@torch.no_grad()
def transpose_kernels(model: nn.Module, mask) -> None:
    """θ[o, i, h, w] ← θ[o, i, w, h] for every 2-D convolution, where the mask allows."""
    convolutions = square_convolutions(model)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    for module in convolutions:
        module.weight.copy_(module.weight.transpose(2, 3).clone())
    restrict_to_mask(model, before, mask)


@register_loop_method("ct", conv_only=True, stacks=True, work=lambda cfg, sizes: loop_work(cfg, sizes.retain))
def ct(model, data, mask, cfg: CTConfig):
    transpose_kernels(model, mask)
    return method_loop(cfg, cross_entropy_loss, *epoch_batches(data, data.retain, cfg))
