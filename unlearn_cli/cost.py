"""Compute cost in units that do not depend on the machine: examples passed forward and examples back-propagated.

A run's work is `forward + 2 × backward`, in forward-example units: a backward pass costs about two forward
passes (one product with the weights for the input gradient, one for the weight gradient; Kaplan et al. 2020,
"Scaling Laws for Neural Language Models", §2.1, and `benchmarks/bench_cost.py` checks it per method with torch's
FLOP counter). `cost ×retrain` is a run's work over the work of retraining on the retain set with the parent's
recipe: 3 × the examples that recipe trains on (docs/cost.md).

A `WorkMeter` counts whatever runs while it is open: every outermost module call (a model, a teacher copy, a
DistributedDataParallel wrapper; never the layers inside it) adds its batch to `forward`, and a backward pass that
reaches that call's output adds the batch to `backward`. Nothing has to be instrumented by hand, so a method's
teacher forwards, Fisher terms and per-example gradients count like its training steps; only a pool's vectorized
call, whose module calls each see one model's part, counts its models' examples itself (`WorkMeter.count_call`).

Usage:
    with WorkMeter() as meter:
        model(inputs).sum().backward()
    meter.work   # Work(forward=len(inputs), backward=len(inputs)); meter.work.units == 3 * len(inputs)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BACKWARD_WEIGHT = 2  # a backward pass ≈ 2 forward passes


@dataclass(frozen=True)
class Work:
    """Examples passed forward and examples back-propagated by one run."""

    forward: int = 0
    backward: int = 0

    @property
    def units(self) -> int:
        """forward + 2 × backward: the run's work in forward-example units."""
        return self.forward + BACKWARD_WEIGHT * self.backward

    def __add__(self, other: "Work") -> "Work":
        return Work(self.forward + other.forward, self.backward + other.backward)

    def scaled(self, count: int) -> "Work":
        return Work(self.forward * count, self.backward * count)

    def shared(self, count: int) -> "Work":
        """One of `count` equal shares (a pool's models that ran stacked, on equal data)."""
        return Work(self.forward // count, self.backward // count)


def trained(examples: int) -> Work:
    """The work of a training pass over `examples`: each forwarded and back-propagated once."""
    return Work(examples, examples)


def forwarded(examples: int) -> Work:
    return Work(examples, 0)


def examples_in_steps(set_size: int, batch_size: int, steps: int) -> int:
    """Examples in the first `steps` batches of repeated passes over `set_size` examples in batches of `batch_size`
    (every pass ends with a partial batch when `batch_size` does not divide `set_size`)."""
    if set_size <= 0 or steps <= 0:
        return 0
    per_pass = math.ceil(set_size / batch_size)
    passes, rest = divmod(steps, per_pass)
    return passes * set_size + min(rest * batch_size, set_size)


def batch_sizes(set_size: int, batch_size: int) -> list[int]:
    """The sizes of the batches of one pass over `set_size` examples."""
    return [min(batch_size, set_size - start) for start in range(0, set_size, batch_size)]


def loop_steps(set_size: int, batch_size: int, epochs: int, max_steps: int | None = None) -> int:
    """Optimizer steps of a loop of `epochs` passes over `set_size` examples, `max_steps` capping it."""
    steps = math.ceil(set_size / batch_size) * epochs
    return steps if max_steps is None else min(steps, max_steps)


def loop_examples(set_size: int, batch_size: int, epochs: int, max_steps: int | None = None) -> int:
    """Examples a training loop of `epochs` passes over `set_size` examples trains on, `max_steps` capping it."""
    return examples_in_steps(set_size, batch_size, loop_steps(set_size, batch_size, epochs, max_steps))


def retrain_units(recipe: dict, retain_size: int) -> int | None:
    """The work of retraining on `retain_size` examples with a `train` configuration `recipe` (its epochs, batch
    size and step cap); None when the recipe does not say how many epochs it trained."""
    epochs = recipe.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return None
    batch_size = recipe.get("batch_size") if isinstance(recipe.get("batch_size"), int) else 128
    max_steps = recipe.get("max_steps") if isinstance(recipe.get("max_steps"), int) else None
    return trained(loop_examples(retain_size, max(1, batch_size), epochs, max_steps)).units


def batch_size_of(args: tuple) -> int:
    """The number of examples of a module call: the first tensor argument's leading size (1 for a scalar)."""
    import torch  # in the functions that meter a model: `Work` and `RecordedCost` are read without torch (`info`)

    for argument in args:
        if isinstance(argument, torch.Tensor):
            return int(argument.shape[0]) if argument.dim() > 0 else 1
    return 0


def _uncounted(args: tuple) -> bool:
    """Whether a module call is one model's part of a vectorized (torch.func.vmap) call, which its caller counts,
    or a pass on the meta device that only measures a model (no arithmetic is done)."""
    import torch

    return any(isinstance(argument, torch.Tensor)
               and (argument.is_meta or torch._C._functorch.is_batchedtensor(argument)) for argument in args)


class WorkMeter:
    """Counts the examples every outermost module call forwards, and those a backward pass reaches, while open.

    Meters nest: an inner one (one tuning candidate) counts into every meter open around it (the search)."""

    _open: list["WorkMeter"] = []
    _depth = 0  # module calls in progress: only a call made at depth 0 is an outermost one
    _handles: list = []

    def __init__(self):
        self.forward = 0
        self.backward = 0

    @property
    def work(self) -> Work:
        return Work(self.forward, self.backward)

    def __enter__(self) -> "WorkMeter":
        from torch import nn

        if not WorkMeter._open:
            WorkMeter._depth = 0
            WorkMeter._handles = [nn.modules.module.register_module_forward_pre_hook(WorkMeter._entered),
                                  nn.modules.module.register_module_forward_hook(WorkMeter._left, always_call=True)]
        WorkMeter._open.append(self)
        return self

    def __exit__(self, *exception) -> None:
        WorkMeter._open.remove(self)
        if not WorkMeter._open:
            for handle in WorkMeter._handles:
                handle.remove()
            WorkMeter._handles = []

    @staticmethod
    def _entered(module, args) -> None:
        WorkMeter._depth += 1

    @staticmethod
    def _left(module, args, output) -> None:
        WorkMeter._depth -= 1
        if WorkMeter._depth > 0 or _uncounted(args):
            return
        WorkMeter.count_call(batch_size_of(args), output)

    @staticmethod
    def count_call(examples: int, output) -> None:
        """Count a call that forwarded `examples` into every open meter, and its backward pass when one reaches
        `output`: what the hooks count for an outermost module call, and what a pool's vectorized call counts."""
        import torch

        meters = list(WorkMeter._open)  # a backward pass after a meter closed still counts in those open now
        if not meters:
            return
        WorkMeter.record(forwarded(examples), meters)
        if isinstance(output, torch.Tensor) and output.requires_grad and torch.is_grad_enabled():
            output.register_hook(lambda gradient: WorkMeter.record(Work(0, examples), meters))

    @staticmethod
    def record(work: Work, meters: list["WorkMeter"] | None = None) -> None:
        """Count `work` in `meters` (every open one by default)."""
        for meter in WorkMeter._open if meters is None else meters:
            meter.forward += work.forward
            meter.backward += work.backward


@dataclass(frozen=True)
class RecordedCost:
    """What a checkpoint records of its cost (metadata keys `work_forward`, `work_backward`, `localize_work`,
    `retrain_work`; each absent when unknown): its own run's work, the localization work of the mask it was made
    with, and the work of retraining on its retain set with its parent's recipe."""

    work: Work | None = None
    localize_units: int | None = None
    retrain_units: int | None = None

    KEYS = ("work_forward", "work_backward", "localize_work", "retrain_work")

    def to_meta(self) -> dict[str, str]:
        values = {"work_forward": None if self.work is None else self.work.forward,
                  "work_backward": None if self.work is None else self.work.backward,
                  "localize_work": self.localize_units, "retrain_work": self.retrain_units}
        return {key: str(value) for key, value in values.items() if value is not None}

    @classmethod
    def from_integers(cls, values: dict[str, int | None]) -> "RecordedCost":
        forward, backward = values.get("work_forward"), values.get("work_backward")
        work = Work(forward, backward) if forward is not None and backward is not None else None
        return cls(work, values.get("localize_work"), values.get("retrain_work"))

    @property
    def pipeline_units(self) -> int | None:
        """The pipeline's work: the run's own plus its mask's localization (None when the run's is unknown)."""
        if self.work is None:
            return None
        return self.work.units + (self.localize_units or 0)

    def times_retrain(self) -> float | None:
        """cost ×retrain: the pipeline's work over the retraining work (None when either is unknown)."""
        units = self.pipeline_units
        return None if units is None or not self.retrain_units else units / self.retrain_units


def reference_units(parent_method: str | None, parent_recipe: dict, parent_cost: RecordedCost,
                    retain_size: int) -> int | None:
    """The retraining a model unlearned from a parent is measured against: retraining on `retain_size` examples with
    the recipe the parent was trained with (a parent that was itself unlearned passes its own reference on)."""
    if parent_method is None:
        return retrain_units(parent_recipe, retain_size)
    return parent_cost.retrain_units
