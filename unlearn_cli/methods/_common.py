"""What the unlearning methods share: their data, batch schedules, training loops, gradients (configs: method_configs).

Usage:
    data = UnlearnData.split(dataset, forget_indices, new_model=factory)
    method_loop(cfg, loss_fn, *epoch_batches(data, data.retain, cfg)).run(model, data, mask)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from unlearn_cli.cost import Work, forwarded, loop_examples, trained
from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import retain_indices
from unlearn_cli.distributed import Shard, current_shard
from unlearn_cli.engine import FastPath, LoopSettings, LossFn, Mask, run_loop
from unlearn_cli.method_configs import LoopConfig, MethodConfig, UpdateConfig
from unlearn_cli.seeding import derive_seed, epoch_seed


@dataclass
class UnlearnData:
    """What a method sees: the dataset, the forget / retain split of its training set, and how to rebuild the model."""

    dataset: ImageData
    forget: torch.Tensor  # int64 [K], sorted training indices
    retain: torch.Tensor  # int64 [N - K], sorted training indices
    new_model: Callable[[], nn.Module]  # the architecture freshly initialized (retrain; rft's reset)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    training_config: dict = field(default_factory=dict)  # the parent's `train` configuration (retrain's defaults)
    on_step: Optional[Callable[[dict], None]] = None  # progress callback handed to the training loop
    fast: FastPath = field(default_factory=FastPath)  # autocast / channels-last / compile for the loop
    shard: Shard = field(default_factory=current_shard)  # this rank's part of every training epoch (torchrun)

    @classmethod
    def split(cls, dataset: ImageData, forget: torch.Tensor, **kwargs) -> "UnlearnData":
        forget = torch.as_tensor(forget, dtype=torch.long).unique()
        return cls(dataset, forget, retain_indices(dataset.num_train, forget), **kwargs)


@dataclass(frozen=True)
class SetSizes:
    """What a method's work depends on besides its config: the sizes of its sets and the parent's recipe."""

    forget: int
    retain: int
    train: int  # forget + retain
    recipe: dict = field(default_factory=dict)  # the parent's `train` configuration
    calibration: int = 0  # test examples a calibration forwards through the parent and the unlearned model

    @classmethod
    def of(cls, data: "UnlearnData") -> "SetSizes":
        return cls(len(data.forget), len(data.retain), data.dataset.num_train, data.training_config)


RECOVERY_SAMPLE = 1024  # retain examples `apply`'s recovery check forwards, before and after the method


def recovery_sample(retain: torch.Tensor) -> torch.Tensor:
    """At most RECOVERY_SAMPLE retain indices, evenly spaced over the retain set: what the recovery check scores."""
    return retain[::max(1, -(-len(retain) // RECOVERY_SAMPLE))]


def pipeline_work(method_work: Work, sizes: SetSizes, localize_units: int | None) -> int:
    """The work `apply` will record for a method whose own work is `method_work`: with the recovery check (the retain
    sample forwarded before and after), a calibration (its examples forwarded through the parent and the result)
    and the mask's localization."""
    check = forwarded(2 * len(recovery_sample(torch.arange(sizes.retain))) + 2 * sizes.calibration)
    return (method_work + check).units + (localize_units or 0)


def loop_work(cfg: LoopConfig, set_size: int) -> Work:
    """A loop of cfg.epochs passes over `set_size` examples (cfg.max_steps capping it): each trained once."""
    return trained(loop_examples(set_size, cfg.batch_size, cfg.epochs, cfg.max_steps))


def loop_settings(cfg: LoopConfig) -> LoopSettings:
    return LoopSettings(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                        schedule=cfg.schedule, final_lr_fraction=cfg.final_lr_fraction, max_steps=cfg.max_steps)


def shuffled(indices: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """`indices` in a (seed, epoch)-determined random order."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return indices[torch.randperm(len(indices), generator=generator)]


def epoch_batches(data: UnlearnData, indices: torch.Tensor, cfg: MethodConfig, seed_offset: int = 0):
    """(epoch -> shuffled training batches of `indices`, batches per epoch), this rank's shard of each epoch."""

    def batches_for_epoch(epoch: int):
        return data.dataset.batches("train", indices, cfg.batch_size, shuffle=True, seed=derive_seed(cfg.seed, seed_offset),
                                    epoch=epoch, device=data.device, shard=data.shard)

    return batches_for_epoch, data.shard.batches_per_epoch(len(indices), cfg.batch_size)


def relabelled_batches(data: UnlearnData, order: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """Training batches over `order` (kept as given, this rank's shard of it) whose labels come from `labels` [N_train]."""
    order, batch_size = data.shard.take(order), data.shard.local_batch_size(batch_size)
    images = data.dataset.batches("train", order, batch_size, shuffle=False, device=data.device)
    for (inputs, _), chunk in zip(images, order.split(batch_size)):
        yield inputs, labels[chunk].to(data.device)


@dataclass
class MethodLoop:
    """A finetune-like method's training loop, ready to run: its loss, its batches, its schedule, and what is
    trained whatever the mask says. `run` runs it on one model; a pool runs the loops of its models stacked
    (`unlearn_cli.stacked.run_stacked`) when the method `stacks`."""

    loss_fn: LossFn
    batches_for_epoch: Callable[[int], Iterable]
    steps_per_epoch: int
    settings: LoopSettings
    always_trainable: tuple[str, ...] = ()
    freeze_bn: bool = False
    gradient_scale: dict[str, torch.Tensor] | None = None  # per-entry gradient factors (msg); such a loop runs alone

    @property
    def shared_part(self) -> tuple:
        """What the loops of a pool's models must share to run stacked: all but their batches."""
        return self.settings, self.steps_per_epoch, self.always_trainable, self.freeze_bn

    def run(self, model: nn.Module, data: UnlearnData, mask: Mask | None) -> nn.Module:
        """The one training loop; the mask is enforced inside `run_loop`."""
        run_loop(model, self.loss_fn, self.batches_for_epoch, self.settings, mask=mask,
                 always_trainable=self.always_trainable, freeze_bn=self.freeze_bn,
                 steps_per_epoch=self.steps_per_epoch, on_step=data.on_step, fast=data.fast,
                 gradient_scale=self.gradient_scale)
        return model


def method_loop(cfg: UpdateConfig, loss_fn: LossFn, batches_for_epoch: Callable[[int], Iterable],
                steps_per_epoch: int, always_trainable: Iterable[str] = (),
                gradient_scale: dict[str, torch.Tensor] | None = None) -> MethodLoop:
    """The loop of a method with config `cfg`: its loss and batch schedule under cfg's optimizer settings."""
    return MethodLoop(loss_fn, batches_for_epoch, steps_per_epoch, loop_settings(cfg), tuple(always_trainable),
                      cfg.freeze_bn, gradient_scale)


def fresh_initialization(data: UnlearnData, seed: int) -> nn.Module:
    """A seeded, freshly initialized copy of the architecture: every layer's own `reset_parameters()`.

    Parameters owned by modules without `reset_parameters` (e.g. a ViT's position embedding) keep the
    architecture's construction-time initialization. The global random state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = data.new_model()
        for module in fresh.modules():
            owns_parameters = any(True for _ in module.parameters(recurse=False))
            if owns_parameters and callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return fresh


def batch_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
    """For each batch: (batch size, {name: gradient of the batch-mean cross-entropy}), the model in eval mode."""
    model.eval()
    names, parameters = zip(*model.named_parameters())
    for inputs, labels in batches:
        loss = nn.functional.cross_entropy(model(inputs), labels)
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        yield len(labels), {name: (torch.zeros_like(parameter) if gradient is None else gradient)
                            for name, parameter, gradient in zip(names, parameters, gradients)}
