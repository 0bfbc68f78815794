"""The one training / inference loop that `train`, every finetune-like unlearning method and a stacked pool reuse.

A method is a loss function plus a batch schedule; the loop (`train`) owns the optimizer, the schedule, the
bookkeeping and the mask. It trains a `Trainee`: one model (`OneModel`) or a stack of models trained at once
(`unlearn_cli.stacked.ModelStack`). The mask is enforced in exactly one place, the `MaskPlan` restored after
every optimizer step: entries outside it are written back from a saved copy, so they stay bit-identical
whatever the optimizer does (momentum, weight decay, an L1 term in the loss).

Inside a torchrun process group (see `unlearn_cli.distributed`) the loop is data-parallel: the forward
pass goes through DistributedDataParallel and `train_classifier` shards every epoch. `FastPath` holds
the CUDA speed-ups (bf16 autocast, channels-last, torch.compile); none of them changes what is computed
beyond floating-point rounding, and all are off by default.

Usage:
    stats = run_loop(model, loss_fn, batches_for_epoch, LoopSettings(epochs=5, lr=0.1), mask=mask)
    logits = predict(model, data, "test")
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from unlearn_cli.config import default_threads
from unlearn_cli.distributed import Shard, current_shard, sum_over_ranks, wrap_for_training
from unlearn_cli.errors import UserError, flag
from unlearn_cli.method_configs import check_schedule

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


def use_threads(requested: int | None) -> int:
    """Run torch's CPU work on `requested` threads, or on `config.default_threads()` when None ($UNLEARN_THREADS,
    then 1 under a parallel make); returns the count in use (torch's own default when neither says)."""
    count = requested if requested is not None else default_threads()
    if count is not None:
        torch.set_num_threads(count)
        with contextlib.suppress(RuntimeError):  # settable once per process, before its first inter-op work
            torch.set_num_interop_threads(count)
    return torch.get_num_threads()


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
    schedule: str = "cosine"  # one of method_configs.SCHEDULES: cosine (per step, down to final_lr_fraction × lr), constant, warmup-linear
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


class MaskPlan:
    """Which parameters a mask freezes and how the entries outside it are restored: the mask guarantee of training.

    A tensor with no selected entry gets no gradient (SGD leaves it alone); a tensor selected in part keeps a copy
    of its values and `restore` writes them back outside the selection after every optimizer step, so they stay
    bit-identical whatever the optimizer does (momentum, weight decay, an L1 term in the loss). The tensors are
    one model's parameters, or a stack's ([N, …], the i-th selection model i's mask).
    """

    def __init__(self, parameters: dict[str, torch.Tensor], selections: dict[str, torch.Tensor]):
        self.parameters = parameters  # name -> the tensor trained in place; a name without a selection trains whole
        self.partial: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (selected, values outside it)
        self.trainable: list[str] = []
        for name, value in parameters.items():
            selected = selections.get(name)
            if selected is not None and not bool(selected.any()):
                value.requires_grad_(False)
                continue
            value.requires_grad_(True)
            self.trainable.append(name)
            if selected is not None and not bool(selected.all()):
                self.partial[name] = (selected, value.detach().clone())

    def trainable_tensors(self) -> list[torch.Tensor]:
        return [self.parameters[name] for name in self.trainable]

    @torch.no_grad()
    def restore(self) -> None:
        for name, (selected, original) in self.partial.items():
            keep_outside_mask(self.parameters[name], selected, original)


def refuse_empty_masks(names: Iterable[str], masks: list[Mask | None], always_trainable: Iterable[str] = (),
                       model_names: list[str] | None = None) -> None:
    """A UserError when a mask leaves its model nothing to train (`model_names[i]` names model i's in the message);
    names in `always_trainable` train whatever the masks say."""
    names, always = list(names), set(always_trainable)
    for position, mask in enumerate(masks):
        if mask is not None and not any(name in always or bool(mask[name].any()) for name in names):
            raise UserError(NOTHING_TO_TRAIN if model_names is None else f"{model_names[position]}: {NOTHING_TO_TRAIN}")


def mask_plan(parameters: dict[str, torch.Tensor], masks: list[Mask | None], always_trainable: Iterable[str] = (),
              stacked: bool = False) -> MaskPlan:
    """The plan of `masks[i]` (None: everything trains) over model i's parameters: one model's `parameters`, or
    with `stacked` a stack's. Names in `always_trainable` train whatever the masks say."""
    if all(mask is None for mask in masks):
        return MaskPlan(parameters, {})
    always = set(always_trainable)
    return MaskPlan(parameters, {name: _selection(name, value, masks, stacked)
                                 for name, value in parameters.items() if name not in always})


def _selection(name: str, value: torch.Tensor, masks: list[Mask | None], stacked: bool) -> torch.Tensor:
    """The entries of parameter `name` (`value`, stacked or not) that the masks let change."""
    shape = value.shape[1:] if stacked else value.shape
    per_model = [torch.ones(shape, dtype=torch.bool, device=value.device) if mask is None
                 else mask[name].to(value.device, torch.bool) for mask in masks]
    return torch.stack(per_model) if stacked else per_model[0]


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


def training_mode(model: nn.Module, freeze_bn: bool) -> None:
    """`model` in training mode; with `freeze_bn` its normalization layers keep their running statistics."""
    model.train()
    if freeze_bn:
        set_batchnorm_eval(model)


def learning_rate(settings: LoopSettings, step: int, total_steps: int) -> float:
    """The learning rate at `step` (0-based) of `total_steps`: constant; cosine from lr down to
    final_lr_fraction · lr; or warmup-linear, up to lr over the first half of the steps and down over the second
    (Deep Unlearn's LinearAnnealingLR for MSG, github.com/xcadet/deepunlearn `munl/unlearning/kgltop2.py`, there
    stepped once an epoch): with k = step + 1 and A = ⌊(T + 1) / 2⌋, lr · k / A up to A, then
    lr · (T + 1 − k) / (T + 1 − A)."""
    if settings.schedule == "constant":
        return settings.lr
    if settings.schedule == "warmup-linear":
        k, total = step + 1, max(1, total_steps)
        peak = (total + 1) // 2
        return settings.lr * (k / peak if k <= peak else (total + 1 - k) / (total + 1 - peak))
    floor = settings.final_lr_fraction * settings.lr
    return floor + (settings.lr - floor) * 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps)))


class Trainee:
    """What the loop trains: one model (`OneModel`) or a stack of models (`stacked.ModelStack`).

    `forward` is what the loss function calls, `module` what is put in training mode every epoch, `plan` the mask
    plan over the tensors the optimizer updates, `count` how many models one step trains (the loss is their losses
    summed) and `replicas` how many processes train the same model (data-parallel ranks).
    """

    forward: Callable
    module: nn.Module
    plan: MaskPlan
    count: int = 1
    replicas: int = 1
    device_type: str = "cpu"
    loss_name: str = "the loss"

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of `loss` in the trainable tensors' `.grad` (the previous step's dropped)."""
        for tensor in self.plan.trainable_tensors():
            tensor.grad = None
        loss.backward()

    def finish(self) -> None:
        """After the loop, finished or interrupted: the model(s) as the caller should find them."""


class OneModel(Trainee):
    """One model, trained in place: inside a process group through DistributedDataParallel, optionally
    channels-last and compiled (`FastPath`)."""

    def __init__(self, model: nn.Module, mask: Mask | None, always_trainable: Iterable[str], fast: FastPath,
                 gradient_scale: dict[str, torch.Tensor] | None = None):
        self.module, self.channels_last = model, fast.channels_last
        parameters = dict(model.named_parameters())  # names of the unwrapped model: no `module.` prefix
        # name -> a factor per entry on its gradient (MSG's slower weights), moved to its parameter once
        self.gradient_scale = {name: scale.to(parameters[name].device, parameters[name].dtype)
                               for name, scale in (gradient_scale or {}).items()}
        refuse_empty_masks(parameters, [mask], always_trainable)
        if fast.channels_last:
            model.to(memory_format=torch.channels_last)  # in place, before the plan copies the values to restore
        self.plan = mask_plan(parameters, [mask], always_trainable)
        self.forward = wrap_for_training(model)  # after freezing: DDP synchronizes the trainable parameters only
        if fast.compile:
            self.forward = torch.compile(self.forward)
        self.replicas = current_shard().world
        self.device_type = next(model.parameters()).device.type

    def backward(self, loss: torch.Tensor) -> None:
        """Trainee.backward, each gradient then scaled by its `gradient_scale`: an entry scaled by c trains at c × the
        learning rate (weight decay unscaled)."""
        super().backward(loss)
        for name, scale in self.gradient_scale.items():
            gradient = self.plan.parameters[name].grad
            if gradient is not None:
                gradient.mul_(scale)

    def finish(self) -> None:
        for parameter in self.module.parameters():
            parameter.requires_grad_(True)
        if self.channels_last:
            self.module.to(memory_format=torch.contiguous_format)


@dataclass
class Tally:
    """The loop's bookkeeping: steps, images, running loss and accuracy, progress reports, the finite-loss check."""

    total_steps: int
    trainee: Trainee
    on_step: Callable[[dict], None] | None = None
    step: int = 0
    images: int = 0
    loss_sum: float = 0.0
    correct_sum: int = 0
    count_sum: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def add(self, epoch: int, loss: torch.Tensor, correct: int, count: int) -> None:
        """Count one optimizer step whose loss was `loss` with `correct` of `count` predictions right."""
        self.step += 1
        loss_value = float(loss.detach()) / self.trainee.count  # a stack's: the mean of its models' losses
        if not math.isfinite(loss_value):
            raise UserError(f"{self.trainee.loss_name} became {loss_value} at step {self.step}; lower the learning "
                            f"rate ({flag('lr')})")
        self.images += count * self.trainee.replicas
        self.loss_sum += loss_value * count
        self.correct_sum += int(correct)
        self.count_sum += count
        if self.on_step is not None:
            self.on_step({"epoch": epoch, "step": self.step, "total_steps": self.total_steps, "loss": loss_value,
                          "accuracy": correct / max(1, count), "images": self.images})

    def summary(self) -> dict:
        return {"steps": self.step, "images": self.images, "seconds": time.perf_counter() - self.started,
                "loss": self.loss_sum / max(1, self.count_sum), "accuracy": self.correct_sum / max(1, self.count_sum)}


def planned_steps(settings: LoopSettings, steps_per_epoch: int) -> int:
    """Optimizer steps of a loop of settings.epochs epochs of `steps_per_epoch` steps, settings.max_steps capping it."""
    steps = steps_per_epoch * settings.epochs
    return steps if settings.max_steps is None else min(steps, settings.max_steps)


def train(trainee: Trainee, loss_fn: LossFn, batches_for_epoch: Callable[[int], Iterable], settings: LoopSettings,
          steps_per_epoch: int, freeze_bn: bool = False, on_step: Callable[[dict], None] | None = None,
          amp: bool = False) -> dict:
    """The one training loop: SGD on `loss_fn` over the batches, the schedule, the mask plan after every step.

    The optimizer is built after the first backward pass, once the trainee has laid its tensors out as their
    gradients come (a stack's, see `stacked.ModelStack.backward`); it holds no state before its first step.
    """
    check_schedule(settings.schedule)
    tally = Tally(planned_steps(settings, steps_per_epoch), trainee, on_step)
    optimizer = None
    try:
        for epoch in range(settings.epochs):
            training_mode(trainee.module, freeze_bn)
            for batch in batches_for_epoch(epoch):
                if tally.done:
                    break
                info = StepInfo(tally.step, tally.total_steps, epoch)
                with torch.autocast(trainee.device_type, dtype=torch.bfloat16 if amp else None, enabled=amp):
                    loss, correct, count = loss_fn(trainee.forward, batch, info)
                trainee.backward(loss)
                if optimizer is None:
                    optimizer = torch.optim.SGD(trainee.plan.trainable_tensors(), lr=settings.lr,
                                                momentum=settings.momentum, weight_decay=settings.weight_decay)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(settings, tally.step, tally.total_steps)
                optimizer.step()
                trainee.plan.restore()
                tally.add(epoch, loss, correct, count)
            if tally.done:
                break
    finally:
        trainee.finish()
    return tally.summary()


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
    gradient_scale: dict[str, torch.Tensor] | None = None,
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
        gradient_scale: parameter name -> a factor per entry on its gradient, every step (MSG's 0.1 × rate).
    """
    fast = fast or FastPath()
    trainee = OneModel(model, mask, always_trainable, fast, gradient_scale)
    if steps_per_epoch is None:
        steps_per_epoch = sum(1 for _ in batches_for_epoch(0))
    return train(trainee, loss_fn, batches_for_epoch, settings, steps_per_epoch, freeze_bn, on_step, fast.amp)


class ConfidenceRecord:
    """Per training example, the softmax probability of its label at every step that trained on it, in the
    forward pass of that step (before the update, in training mode): summed, and counted, for each of M models.

    Its mean over training is the training-time confidence of Jiang et al. 2021 ("Characterizing structural
    regularities of labeled data in overparameterized models"); one minus it is the memorization proxy of Zhao et
    al. 2024 ("What makes unlearning hard and what to do about it"), docs/memorization.md. It costs one softmax of
    logits the loss computes anyway.
    """

    def __init__(self, models: int, num_train: int, device: torch.device | str = "cpu"):
        self.sums = torch.zeros(models, num_train, dtype=torch.float64, device=device)
        self.counts = torch.zeros(models, num_train, dtype=torch.float64, device=device)

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor, examples: torch.Tensor) -> None:
        """One step's logits [B, C] (one model) or [M, B, C] (a stack), labels and example positions [B] or [M, B]."""
        if logits.dim() == 2:
            logits, labels, examples = logits[None], labels[None], examples[None]
        confidence = torch.softmax(logits.detach().float(), dim=-1).gather(-1, labels[..., None]).squeeze(-1)
        self.sums.scatter_add_(1, examples, confidence.double())
        self.counts.scatter_add_(1, examples, torch.ones(examples.shape, dtype=torch.float64, device=examples.device))

    def means(self) -> torch.Tensor:
        """[M, N] float32 on the CPU: each example's mean confidence over the steps that trained on it, NaN where
        none did (left out, or past --max-steps). Inside a process group, over every rank's shard (a collective)."""
        sums, counts = sum_over_ranks(self.sums.clone()), sum_over_ranks(self.counts.clone())
        return torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan).float().cpu()


def recording(loss_fn: LossFn, record: ConfidenceRecord) -> LossFn:
    """`loss_fn` on batches of (inputs, labels, examples): each forward pass's logits also go into `record`."""

    def loss(forward, batch, info: StepInfo):
        inputs, labels, examples = batch

        def forward_recorded(batch_inputs):
            logits = forward(batch_inputs)
            record.add(logits, labels, examples)
            return logits

        return loss_fn(forward_recorded, (inputs, labels), info)

    return loss


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
    record: ConfidenceRecord | None = None,
) -> dict:
    """Supervised training of `model` on the training examples `indices` (None = all): the paper's recipe.

    `batch_size` is the global batch; inside a process group each rank trains on its shard of every
    epoch (`shard` defaults to this process's, the whole data outside a group). `record` (one model's) gets the
    confidence of every example at every step that trains on it.
    """
    shard = shard or current_shard()
    count = data.num_train if indices is None else len(indices)
    return run_loop(
        model, cross_entropy_loss if record is None else recording(cross_entropy_loss, record),
        lambda epoch: data.batches("train", indices, batch_size, shuffle=True, seed=seed, epoch=epoch, device=device,
                                   shard=shard, with_examples=record is not None),
        settings, steps_per_epoch=shard.batches_per_epoch(count, batch_size), on_step=on_step, fast=fast,
    )
