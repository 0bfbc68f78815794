"""Training a pool of small models at once: their parameters stacked, one vectorized forward and backward pass
and one optimizer step for all of them (`torch.func.stack_module_state`, `functional_call`, `vmap`).

Each model keeps what its own run would have: its initialization (built under its seed), its data order (the
batches of `ImageData.batches` seeded with its seed), its schedule. The loss is the sum of the models' mean
cross-entropies, so each model's gradient is exactly its own; SGD with momentum and weight decay acts element by
element, so one optimizer over the stacked tensors is N optimizers. What differs from N separate runs is only
the order of floating-point operations in the batched kernels (see `tests/test_stacked.py` for the tolerance).

BatchNorm's running statistics are stacked buffers too, updated per model inside the vectorized forward pass.
Dropout would need a random stream per model in the same order as a single run draws it: a model with dropout is
not stacked (`stack_refusal` says why and the command trains one model at a time).

Masks are per model too: each model's entries outside its mask are written back after every step, bit for bit,
as `engine.MaskedStep` does for one model, so `apply --seeds --stacked` keeps the mask guarantee of `apply`.

Usage:
    reason = stack_refusal(model)                     # None when the architecture can be stacked
    train_stacked(models, data, None, settings, batch_size=128, seeds=[0, 1, 2], device=device)
    run_stacked(models, lambda epoch: [loop.batches_for_epoch(epoch) for loop in loops], settings, steps, device,
                masks=[mask_0, mask_1, mask_2])
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from unlearn_cli.cost import WorkMeter, trained
from unlearn_cli.engine import (NOTHING_TO_TRAIN, FastPath, LoopSettings, Mask, keep_outside_mask, learning_rate,
                                set_batchnorm_eval)
from unlearn_cli.errors import UserError, flag


def stack_refusal(model: nn.Module) -> str | None:
    """Why `model`'s architecture cannot be trained stacked, or None."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return f"its dropout ({name}) would draw random numbers in another order than a single run"
    return None


def stacked_bytes(model: nn.Module, count: int) -> int:
    """Memory that `count` stacked copies need for parameters, gradients and momentum (buffers besides)."""
    parameters = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    buffers = sum(buffer.numel() * buffer.element_size() for buffer in model.buffers())
    return count * (3 * parameters + buffers)


def train_stacked(
    models: list[nn.Module],
    data,
    indices: torch.Tensor | None,
    settings: LoopSettings,
    batch_size: int,
    seeds: list[int],
    device: torch.device,
    on_step: Callable[[dict], None] | None = None,
    fast: FastPath | None = None,
) -> dict:
    """Train `models` (one architecture, already on `device`) in place, model i on its own seed's batches."""
    if len(models) != len(seeds):
        raise ValueError("one seed per model")
    examples = data.num_train if indices is None else len(indices)

    def streams(epoch: int) -> list:
        return [data.batches("train", indices, batch_size, shuffle=True, seed=seed, epoch=epoch, device=device)
                for seed in seeds]

    return run_stacked(models, streams, settings, math.ceil(examples / batch_size), device, on_step=on_step, fast=fast)


def run_stacked(
    models: list[nn.Module],
    streams_for_epoch: Callable[[int], list[Iterable]],
    settings: LoopSettings,
    steps_per_epoch: int,
    device: torch.device,
    masks: list[Mask | None] | None = None,
    always_trainable: Iterable[str] = (),
    freeze_bn: bool = False,
    model_names: list[str] | None = None,
    on_step: Callable[[dict], None] | None = None,
    fast: FastPath | None = None,
) -> dict:
    """Train `models` in place with SGD on the cross-entropy, model i on the i-th stream of (inputs, labels) batches
    of `streams_for_epoch(epoch)` (all of one batch size), as `engine.run_loop` trains each alone.

    `masks[i]` restricts model i's changes as `run_loop`'s mask does: its entries outside the mask are written back
    after every step, bit for bit; `always_trainable` names parameters trained whatever the masks say.
    `model_names[i]` names model i in error messages.
    """
    fast = fast or FastPath()
    if not models:
        raise ValueError("no model to train")
    count = len(models)
    model_names = model_names or [f"model {position}" for position in range(count)]
    parameters, buffers = stack_module_state(models)  # name -> [N, …] tensors, the parameters leaves with grad
    partial = _stacked_masks(parameters, masks, always_trainable, model_names)
    skeleton = copy.deepcopy(models[0]).to("meta")
    skeleton.train()
    if freeze_bn:
        set_batchnorm_eval(skeleton)

    def forward(parameter_values, buffer_values, inputs):
        return functional_call(skeleton, (parameter_values, buffer_values), (inputs,))

    batched = vmap(forward, in_dims=(0, 0, 0))
    trainable = [name for name, value in parameters.items() if value.requires_grad]
    optimizer = None  # built at the first step, once the parameters are laid out as their gradients come
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)

    step, images, started = 0, 0, time.perf_counter()
    loss_sum, correct_sum, seen = 0.0, 0, 0
    for epoch in range(settings.epochs):
        for batches in zip(*streams_for_epoch(epoch)):
            if step >= total_steps:
                break
            inputs = torch.stack([inputs for inputs, _ in batches])  # [N, B, C, H, W]
            labels = torch.stack([labels for _, labels in batches])  # [N, B]
            with torch.autocast(device.type, dtype=fast.autocast_dtype, enabled=fast.amp):
                logits = batched(parameters, buffers, inputs)  # [N, B, classes]
                losses = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                     reduction="none").view(count, -1).mean(1)
            total = losses.sum()  # model i's gradient is that of its own mean loss
            if optimizer is None:
                gradients = torch.autograd.grad(total, [parameters[name] for name in trainable])
                _adopt_gradient_layout(parameters, dict(zip(trainable, gradients)), partial)
                optimizer = torch.optim.SGD([parameters[name] for name in trainable], lr=settings.lr,
                                            momentum=settings.momentum, weight_decay=settings.weight_decay)
            else:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
            WorkMeter.record(trained(labels.numel()))  # the hooks see one model's part of a vectorized call
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(settings, step, total_steps)
            optimizer.step()
            with torch.no_grad():
                for name, (selected, frozen) in partial.items():
                    keep_outside_mask(parameters[name], selected, frozen)
            step += 1
            loss_value = float(losses.detach().mean())
            if not math.isfinite(loss_value):
                raise UserError(f"the loss of a model became {loss_value} at step {step}; lower the learning rate ({flag('lr')})")
            correct = int((logits.detach().argmax(-1) == labels).sum())
            images += labels.numel()
            loss_sum += loss_value * labels.shape[1]
            correct_sum += correct
            seen += labels.shape[1]
            if on_step is not None:
                on_step({"epoch": epoch, "step": step, "total_steps": total_steps, "loss": loss_value,
                         "accuracy": correct / max(1, labels.numel()), "images": images})
        if step >= total_steps:
            break
    with torch.no_grad():
        for position, model in enumerate(models):
            for name, parameter in model.named_parameters():
                parameter.copy_(parameters[name][position])
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name][position])
    return {"steps": step, "images": images, "seconds": time.perf_counter() - started,
            "loss": loss_sum / max(1, seen), "accuracy": correct_sum / max(1, count * seen)}


def _adopt_gradient_layout(parameters: dict[str, torch.Tensor], gradients: dict[str, torch.Tensor],
                           partial: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Lay each stacked parameter (and its mask's tensors) out in memory as its gradient comes, and hand it that
    gradient.

    vmap's batched `linear` returns weight gradients transposed ([N, in, out] in memory for an [N, out, in]
    weight); a parameter in another layout than its gradient has every gradient copied into its own at every
    step, which `benchmarks/bench_pools.py` measured as a third of a CPU step. The values are unchanged.
    """
    for name, gradient in gradients.items():
        value = parameters[name]
        if gradient.stride() != value.stride():
            parameters[name] = value = _laid_out(value.detach(), gradient.stride()).requires_grad_()
            if name in partial:
                partial[name] = tuple(_laid_out(tensor, gradient.stride()) for tensor in partial[name])
        value.grad = gradient


def _laid_out(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """A copy of `tensor` with the given memory layout."""
    return torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=tensor.device).copy_(tensor)


def _stacked_masks(parameters: dict[str, torch.Tensor], masks: list[Mask | None] | None,
                   always_trainable: Iterable[str], model_names: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-model masks over the stacked parameters, as `engine.MaskedStep` holds one model's: a tensor no model may
    change gets no gradient; one some model may change only in part -> (stacked keep-mask, stacked values now)."""
    if masks is None or all(mask is None for mask in masks):
        return {}
    always = set(always_trainable)
    for mask, model_name in zip(masks, model_names):
        if mask is not None and not any(name in always or bool(mask[name].any()) for name in parameters):
            raise UserError(f"{model_name}: {NOTHING_TO_TRAIN}")
    partial = {}
    for name, stacked in parameters.items():
        if name in always:
            continue
        selected = torch.stack([torch.ones_like(stacked[0], dtype=torch.bool) if mask is None
                                else mask[name].to(stacked.device, torch.bool) for mask in masks])
        if not bool(selected.any()):
            stacked.requires_grad_(False)
        elif not bool(selected.all()):
            partial[name] = (selected, stacked.detach().clone())
    return partial
