"""`scrub` (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"): a student (the model) distils
from a frozen teacher (the original). Each of the first `max_epochs` epochs starts with max-steps on the
forget set (raise KL(teacher‖student)); every epoch then has min-steps on the retain set
(kl_weight·KL + ce_weight·CE). The KL is the temperature-scaled distillation loss of their code.
Both phases are tagged batches through the one training loop.

Usage:
    unlearn apply --model m.safetensors --forget f.json --method scrub --param max_epochs=2 -o out.safetensors
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import torch
from torch import nn

from unlearn_cli.methods import register_loop_method
from unlearn_cli.cost import Work, batch_sizes, forwarded, trained
from unlearn_cli.methods._common import SetSizes, epoch_batches, method_loop
from unlearn_cli.method_configs import ScrubConfig


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher‖student) of the temperature-softened distributions, × T², averaged over the batch."""
    student = nn.functional.log_softmax(student_logits / temperature, dim=1)
    teacher = nn.functional.softmax(teacher_logits / temperature, dim=1)
    return nn.functional.kl_div(student, teacher, reduction="batchmean") * temperature**2


def scrub_work(cfg: ScrubConfig, sizes: SetSizes) -> Work:
    """The student trains on every batch of the schedule, and the teacher forwards it once more."""
    batches = []
    for epoch in range(cfg.epochs):
        if epoch < min(cfg.max_epochs, cfg.epochs):
            batches += batch_sizes(sizes.forget, cfg.batch_size)
        batches += batch_sizes(sizes.retain, cfg.batch_size)
    examples = sum(batches[:cfg.max_steps])
    return trained(examples) + forwarded(examples)


@register_loop_method("scrub", work=scrub_work)
def scrub(model, data, mask, cfg: ScrubConfig):
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    forget_batches, forget_steps = epoch_batches(data, data.forget, cfg, seed_offset=1)
    retain_batches, retain_steps = epoch_batches(data, data.retain, cfg)
    max_epochs = min(cfg.max_epochs, cfg.epochs)

    def tagged_schedule(_):  # the whole SCRUB run as one pass of the loop
        for epoch in range(cfg.epochs):
            if epoch < max_epochs:
                yield from zip(itertools.repeat("max"), forget_batches(epoch))
            yield from zip(itertools.repeat("min"), retain_batches(epoch))

    def loss_fn(model, batch, info):
        phase, (inputs, labels) = batch
        logits = model(inputs)
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        kl = distillation_kl(logits, teacher_logits, cfg.temperature)
        correct = int((logits.argmax(1) == labels).sum())
        if phase == "max":
            return -kl, correct, len(labels)
        ce = nn.functional.cross_entropy(logits, labels)
        return cfg.kl_weight * kl + cfg.ce_weight * ce, correct, len(labels)

    total_steps = max_epochs * forget_steps + cfg.epochs * retain_steps
    return method_loop(dataclasses.replace(cfg, epochs=1), loss_fn, tagged_schedule, total_steps)
