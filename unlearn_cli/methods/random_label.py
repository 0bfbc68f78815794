"""`random-label`: relabel every forget example to a uniformly drawn wrong class (seeded, once), then train on
forget and retain examples shuffled together (Graves et al. 2021; Fan et al. 2023 — SalUn = salun mask + this).

Usage:
    unlearn apply --model m.safetensors --forget f.json --method random-label --mask salun.safetensors -o out.safetensors
"""

from __future__ import annotations

import torch

from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import loop_work, relabelled_batches, method_loop, shuffled
from unlearn_cli.method_configs import RandomLabelConfig


def wrong_labels(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Each label replaced by one of the other num_classes − 1 classes, uniformly."""
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


@register_loop_method("random-label", stacks=True, work=lambda cfg, sizes: loop_work(cfg, sizes.train))
def random_label(model, data, mask, cfg: RandomLabelConfig):
    labels = data.dataset.train_labels.clone()
    labels[data.forget] = wrong_labels(labels[data.forget], data.dataset.num_classes, cfg.seed)
    joint = torch.cat([data.retain, data.forget])

    def batches_for_epoch(epoch: int):
        return relabelled_batches(data, shuffled(joint, cfg.seed, epoch), labels, cfg.batch_size)

    steps_per_epoch = -(-len(joint) // cfg.batch_size)
    return method_loop(cfg, cross_entropy_loss, batches_for_epoch, steps_per_epoch)
