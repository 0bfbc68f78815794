"""The one training / inference loop that `train` and every finetune-like unlearning method reuse.

A method is a loss function plus a batch schedule; the loop owns the optimizer, the schedule and the
mask. The mask is enforced in exactly one place, `MaskedStep.after_step`: entries outside it are
written back from a saved copy after every optimizer step, so they stay bit-identical whatever the
optimizer does (momentum, weight decay, an L1 term in the loss).

Inside a torchrun process group (see `unlearn_cli.distributed`) the loop is data-parallel: the forward
pass goes through DistributedDataParallel and `train_classifier` shards every epoch. `FastPath` holds
the CUDA speed-ups (bf16 autocast, channels-last, torch.compile); none of them changes what is computed
beyond floating-point rounding, and all are off by default.

Usage:
    stats = run_loop(model, loss_fn, batches_for_epoch, LoopSettings(epochs=5, lr=0.1), mask=mask)
    logits = predict(model, data, "test")
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from unlearn_cli.distributed import Shard, current_shard, wrap_for_training
from unlearn_cli.errors import UserError, flag

Mask = dict[str, torch.Tensor]
NOTHING_TO_TRAIN = "the mask selects no parameter to train; use a larger --budget or another mask"


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an unavailable explicit choice is a UserError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple's MPS backend is not available; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FastPath:
    """How the loop runs on an accelerator; the defaults (all off) are the plain float32 CPU path."""

    amp: bool = False  # forward passes under bf16 autocast (weights and optimizer stay float32)
    channels_last: bool = False  # convolution weights (and image batches) in NHWC memory layout
    compile: bool = False  # torch.compile the forward pass (minutes of compilation, then faster steps)

    @classmethod
    def for_device(cls, device: torch.device, amp: bool | None = None, channels_last: bool | None = None,
                   compile: bool | None = None) -> "FastPath":
        """Flags left as None take the device's default: autocast and channels-last on CUDA, nothing elsewhere."""
        on_gpu = device.type == "cuda"
        return cls(amp=on_gpu if amp is None else amp, channels_last=on_gpu if channels_last is None else channels_last,
                   compile=bool(compile))

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.amp else None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass
class LoopSettings:
    epochs: int = 1
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" (per step, down to final_lr_fraction × lr) or "constant"
    final_lr_fraction: float = 0.0
    max_steps: int | None = None  # stop early after this many optimizer steps (smoke runs)


@dataclass
class StepInfo:
    """What a loss function may need to know about where the loop is."""

    step: int
    total_steps: int
    epoch: int

    @property
    def progress(self) -> float:  # t / T in [0, 1)
        return self.step / max(1, self.total_steps)


LossFn = Callable[[nn.Module, object, StepInfo], tuple[torch.Tensor, int, int]]  # -> (loss, correct, count)


class MaskedStep:
    """Restricts optimizer updates to the mask: frozen tensors get no gradient, partial ones are restored."""

    def __init__(self, model: nn.Module, mask: Mask | None, always_trainable: Iterable[str] = ()):
        self.parameters = dict(model.named_parameters())
        always = set(always_trainable)
        self.partial: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (keep-mask, frozen values)
        self.trainable: list[nn.Parameter] = []
        for name, parameter in self.parameters.items():
            selected = None if (mask is None or name in always) else mask[name].to(parameter.device)
            if selected is not None and not bool(selected.any()):
                parameter.requires_grad_(False)
                continue
            parameter.requires_grad_(True)
            self.trainable.append(parameter)
            if selected is not None and not bool(selected.all()):
                self.partial[name] = (selected, parameter.detach().clone())

    @torch.no_grad()
    def after_step(self) -> None:
        for name, (selected, frozen) in self.partial.items():
            keep_outside_mask(self.parameters[name], selected, frozen)

    def restore_requires_grad(self) -> None:
        for parameter in self.parameters.values():
            parameter.requires_grad_(True)


def keep_outside_mask(parameter: torch.Tensor, selected: torch.Tensor, original: torch.Tensor) -> None:
    """In place: entries where `selected` is False get `original`'s values back, bit for bit."""
    torch.where(selected, parameter, original, out=parameter)


@torch.no_grad()
def restrict_to_mask(model: nn.Module, before: dict[str, torch.Tensor], mask: Mask | None) -> None:
    """Write `before` back into every parameter entry outside `mask` (None: keep every change).

    The mask guarantee for methods that change weights without the optimizer (ssd, iu, rft's reset).
    """
    if mask is None:
        return
    for name, parameter in model.named_parameters():
        keep_outside_mask(parameter, mask[name].to(parameter.device), before[name].to(parameter.device))


def set_batchnorm_eval(model: nn.Module) -> None:
    """Put normalization layers in eval mode so their running statistics stay as they are."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def learning_rate(settings: LoopSettings, step: int, total_steps: int) -> float:
    """The learning rate at `step` of `total_steps`: constant, or cosine from lr down to final_lr_fraction · lr."""
    if settings.schedule == "constant":
        return settings.lr
    floor = settings.final_lr_fraction * settings.lr
    return floor + (settings.lr - floor) * 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps)))


def run_loop(
    model: nn.Module,
    loss_fn: LossFn,
    batches_for_epoch: Callable[[int], Iterable],
    settings: LoopSettings,
    mask: Mask | None = None,
    always_trainable: Iterable[str] = (),
    freeze_bn: bool = False,
    steps_per_epoch: int | None = None,
    on_step: Callable[[dict], None] | None = None,
    fast: FastPath | None = None,
) -> dict:
    """Train `model` in place with SGD on `loss_fn` over the batches; return summary numbers.

    Inside a process group the loss function receives the model wrapped in DistributedDataParallel (its
    gradients are averaged over ranks; every rank must run the same number of batches), and the
    summary numbers are this rank's, with `images` counted over all ranks.

    Args:
        batches_for_epoch: epoch -> iterable of batches (whatever `loss_fn` takes).
        mask: parameter name -> bool tensor; None trains everything.
        always_trainable: parameter names trained whatever the mask says (the head under `rft --train-head`).
        steps_per_epoch: length of one epoch, for the schedule (counted from epoch 0 when not given).
        on_step: called after every step with {"epoch", "step", "loss", "accuracy", "images"} for progress bars.
        fast: bf16 autocast / channels-last / torch.compile; None is the plain float32 path.
    """
    fast = fast or FastPath()
    if fast.channels_last:
        model.to(memory_format=torch.channels_last)  # in place, before MaskedStep copies the frozen values
    masked = MaskedStep(model, mask, always_trainable)  # names of the unwrapped model: no `module.` prefix
    if not masked.trainable:
        raise UserError(NOTHING_TO_TRAIN)
    forward_model = wrap_for_training(model)  # after freezing: DDP synchronizes the trainable parameters only
    if fast.compile:
        forward_model = torch.compile(forward_model)
    replicas = current_shard().world
    optimizer = torch.optim.SGD(masked.trainable, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    if steps_per_epoch is None:
        steps_per_epoch = sum(1 for _ in batches_for_epoch(0))
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)

    step, images, started = 0, 0, time.perf_counter()
    loss_sum, correct_sum, count_sum = 0.0, 0, 0
    device_type = next(model.parameters()).device.type
    try:
        for epoch in range(settings.epochs):
            model.train()
            if freeze_bn:
                set_batchnorm_eval(model)
            for batch in batches_for_epoch(epoch):
                if step >= total_steps:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(settings, step, total_steps)
                with torch.autocast(device_type, dtype=fast.autocast_dtype, enabled=fast.amp):
                    loss, correct, count = loss_fn(forward_model, batch, StepInfo(step, total_steps, epoch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                masked.after_step()
                step += 1
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise UserError(f"the loss became {loss_value} at step {step}; lower the learning rate ({flag('lr')})")
                images += count * replicas
                loss_sum += loss_value * count
                correct_sum += int(correct)
                count_sum += count
                if on_step is not None:
                    on_step({"epoch": epoch, "step": step, "total_steps": total_steps, "loss": loss_value,
                             "accuracy": correct / max(1, count), "images": images})
            if step >= total_steps:
                break
    finally:
        masked.restore_requires_grad()
        if fast.channels_last:
            model.to(memory_format=torch.contiguous_format)
    return {"steps": step, "images": images, "seconds": time.perf_counter() - started,
            "loss": loss_sum / max(1, count_sum), "accuracy": correct_sum / max(1, count_sum)}


def cross_entropy_loss(model: nn.Module, batch, info: StepInfo) -> tuple[torch.Tensor, int, int]:
    """Plain supervised cross-entropy on (inputs, labels): the training recipe's loss."""
    inputs, labels = batch
    logits = model(inputs)
    loss = nn.functional.cross_entropy(logits, labels)
    return loss, int((logits.argmax(1) == labels).sum()), len(labels)


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, classes] (float32, CPU) and labels [N] over `batches`, the model in eval mode."""
    model.eval()
    logits, labels = [], []
    for inputs, targets in batches:
        logits.append(model(inputs).float().cpu())
        labels.append(targets.cpu())
    if not logits:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy in % over `batches`."""
    logits, labels = predict(model, batches)
    return 100.0 * float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def cycle(make_iterator: Callable[[int], Iterable]) -> Iterator:
    """Endless batches: restarts `make_iterator(round)` each time it runs out (forget batches in neggrad+)."""
    round_index = 0
    while True:
        empty = True
        for item in make_iterator(round_index):
            empty = False
            yield item
        if empty:
            return
        round_index += 1


def train_classifier(
    model: nn.Module,
    data,
    indices: torch.Tensor | None,
    settings: LoopSettings,
    batch_size: int,
    seed: int,
    device: torch.device,
    on_step: Callable[[dict], None] | None = None,
    fast: FastPath | None = None,
    shard: Shard | None = None,
) -> dict:
    """Supervised training of `model` on the training examples `indices` (None = all): the paper's recipe.

    `batch_size` is the global batch; inside a process group each rank trains on its shard of every
    epoch (`shard` defaults to this process's, the whole data outside a group).
    """
    shard = shard or current_shard()
    count = data.num_train if indices is None else len(indices)
    return run_loop(
        model, cross_entropy_loss,
        lambda epoch: data.batches("train", indices, batch_size, shuffle=True, seed=seed, epoch=epoch, device=device,
                                   shard=shard),
        settings, steps_per_epoch=shard.batches_per_epoch(count, batch_size), on_step=on_step, fast=fast,
    )
