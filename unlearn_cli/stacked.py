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

The loop is the one-model loop (`engine.train`), given a `ModelStack` instead of one model. Masks are per model
too: the stack's mask plan holds each model's, so each model's entries outside its mask are written back after
every step, bit for bit, as for one model, and `apply --seeds --stacked` keeps the mask guarantee of `apply`.

Usage:
    reason = stack_refusal(model)                     # None when the architecture can be stacked
    train_stacked(models, data, None, settings, batch_size=128, seeds=[0, 1, 2], device=device)
    run_stacked(models, lambda epoch: [loop.batches_for_epoch(epoch) for loop in loops], settings, steps, device,
                masks=[mask_0, mask_1, mask_2])
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from unlearn_cli.cost import WorkMeter
from unlearn_cli.engine import (ConfidenceRecord, FastPath, LoopSettings, Mask, MaskPlan, Trainee, mask_plan, recording,
                                refuse_empty_masks, train)


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
    record: ConfidenceRecord | None = None,
) -> dict:
    """Train `models` (one architecture, already on `device`) in place, model i on its own seed's batches;
    `record` (of as many models) gets each model's confidence on every example at every step that trains on it."""
    if len(models) != len(seeds):
        raise ValueError("one seed per model")
    examples = data.num_train if indices is None else len(indices)

    def streams(epoch: int) -> list:
        return [data.batches("train", indices, batch_size, shuffle=True, seed=seed, epoch=epoch, device=device,
                             with_examples=record is not None)
                for seed in seeds]

    return run_stacked(models, streams, settings, math.ceil(examples / batch_size), device, on_step=on_step, fast=fast,
                       record=record)


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
    record: ConfidenceRecord | None = None,
) -> dict:
    """Train `models` in place with SGD on the cross-entropy, model i on the i-th stream of (inputs, labels) batches
    of `streams_for_epoch(epoch)` (all of one batch size), in the loop `engine.run_loop` trains each alone with.

    `masks[i]` restricts model i's changes as `run_loop`'s mask does: its entries outside the mask are written back
    after every step, bit for bit; `always_trainable` names parameters trained whatever the masks say.
    `model_names[i]` names model i in error messages. With `record`, the streams' batches are (inputs, labels,
    examples) and model i's confidences go to the record's model i.
    """
    fast = fast or FastPath()
    stack = ModelStack(models, device, masks, always_trainable, model_names)
    loss = stacked_cross_entropy if record is None else recording(stacked_cross_entropy, record)
    return train(stack, loss, lambda epoch: stacked_batches(streams_for_epoch(epoch)), settings,
                 steps_per_epoch, freeze_bn, on_step, fast.amp)


def stacked_batches(streams: list[Iterable]) -> Iterable[tuple[torch.Tensor, ...]]:
    """The streams' batches side by side: (inputs [N, B, …], labels [N, B], …), model i's batch at i."""
    for batches in zip(*streams):
        yield tuple(torch.stack(parts) for parts in zip(*batches))


def stacked_cross_entropy(forward: Callable, batch, info) -> tuple[torch.Tensor, int, int]:
    """The loss of a stack (`ModelStack.forward`) on stacked batches: the sum of the models' mean cross-entropies,
    so that each model's gradient is exactly its own."""
    inputs, labels = batch
    logits = forward(inputs)  # [N, B, classes]
    losses = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    correct = int((logits.detach().argmax(-1) == labels).sum())
    return losses.view(len(labels), -1).mean(1).sum(), correct, labels.numel()


class ModelStack(Trainee):
    """Models of one architecture as one trainee: their parameters and buffers stacked ([N, …]), one vectorized
    forward pass (`vmap` of `functional_call` on a parameterless copy), one optimizer over the stacked tensors."""

    loss_name = "the loss of a model"

    def __init__(self, models: list[nn.Module], device: torch.device, masks: list[Mask | None] | None,
                 always_trainable: Iterable[str], model_names: list[str] | None):
        if not models:
            raise ValueError("no model to train")
        self.models, self.count, self.device_type = models, len(models), device.type
        masks = masks or [None] * self.count
        names = [name for name, _ in models[0].named_parameters()]
        refuse_empty_masks(names, masks, always_trainable, model_names or [f"model {i}" for i in range(self.count)])
        parameters, self.buffers = stack_module_state(models)  # name -> [N, …] tensors, the parameters leaves
        self.plan = mask_plan(parameters, masks, always_trainable, stacked=True)
        self.module = copy.deepcopy(models[0]).to("meta")  # the architecture without values, for functional_call

        def forward(parameter_values, buffer_values, inputs):
            return functional_call(self.module, (parameter_values, buffer_values), (inputs,))

        self.batched = vmap(forward, in_dims=(0, 0, 0))
        self.laid_out = False  # whether the parameters are laid out in memory as their gradients come

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits [N, B, classes] of inputs [N, B, …], model i on its batch i; the meter counts each model's part."""
        logits = self.batched(self.plan.parameters, self.buffers, inputs)
        WorkMeter.count_call(inputs.shape[0] * inputs.shape[1], logits)  # the hooks see one model's part
        return logits

    def backward(self, loss: torch.Tensor) -> None:
        """The first step's gradients come by `autograd.grad`, in the layout vmap gives them, which the parameters
        then take (`_adopt_gradient_layout`); later steps back-propagate into those."""
        if self.laid_out:
            return super().backward(loss)
        gradients = torch.autograd.grad(loss, self.plan.trainable_tensors())
        _adopt_gradient_layout(self.plan, dict(zip(self.plan.trainable, gradients)))
        self.laid_out = True

    @torch.no_grad()
    def finish(self) -> None:
        """Each model takes its part of the stacked parameters and buffers back."""
        for position, model in enumerate(self.models):
            for name, parameter in model.named_parameters():
                parameter.copy_(self.plan.parameters[name][position])
            for name, buffer in model.named_buffers():
                buffer.copy_(self.buffers[name][position])


def _adopt_gradient_layout(plan: MaskPlan, gradients: dict[str, torch.Tensor]) -> None:
    """Lay each stacked parameter (and its mask's tensors) out in memory as its gradient comes, and hand it that
    gradient.

    vmap's batched `linear` returns weight gradients transposed ([N, in, out] in memory for an [N, out, in]
    weight); a parameter in another layout than its gradient has every gradient copied into its own at every
    step, which `benchmarks/bench_pools.py` measured as a third of a CPU step. The values are unchanged.
    """
    for name, gradient in gradients.items():
        value = plan.parameters[name]
        if gradient.stride() != value.stride():
            plan.parameters[name] = value = _laid_out(value.detach(), gradient.stride()).requires_grad_()
            if name in plan.partial:
                plan.partial[name] = tuple(_laid_out(tensor, gradient.stride()) for tensor in plan.partial[name])
        value.grad = gradient


def _laid_out(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """A copy of `tensor` with the given memory layout."""
    return torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=tensor.device).copy_(tensor)
