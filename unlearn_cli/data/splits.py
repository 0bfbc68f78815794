"""Forget / retain splits as sorted index tensors over the training set (docs/files.md).

Usage:
    forget = draw_forget_indices(data.train_labels, kind="noniid", fraction=0.1, classes=[2, 5], seed=0)
    distinct_forget_sets(data.train_labels, "class", 1.0, [2])    # 1: every seed draws the same set
    retain = retain_indices(data.num_train, forget)
"""

from __future__ import annotations

import math

import torch

from unlearn_cli.errors import UserError

KINDS = ("iid", "noniid", "class")


def forget_pool(labels: torch.Tensor, kind: str, fraction: float, classes: list[int] | None) -> tuple[torch.Tensor, int]:
    """(the training examples a forget set of this kind is drawn from, how many it takes), checked."""
    num_train = len(labels)
    num_classes = int(labels.max()) + 1
    if kind not in KINDS:
        raise UserError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    if not 0 < fraction <= 1:
        raise UserError(f"--fraction {fraction}: must be in (0, 1]")
    if kind == "iid":
        pool = torch.arange(num_train)
        count = round(fraction * num_train)
    else:
        if not classes:
            raise UserError(f"--kind {kind} needs --classes, e.g. --classes 2,5")
        check_classes(classes, num_classes)
        pool = torch.nonzero(torch.isin(labels, torch.tensor(classes))).flatten()
        count = round(fraction * (num_train if kind == "noniid" else len(pool)))
        if count > len(pool):
            raise UserError(f"--fraction {fraction} asks for {count} examples but classes {classes} hold only {len(pool)}; "
                            f"lower --fraction or add classes")
    if count == 0:
        raise UserError(f"--fraction {fraction} of {num_train} examples is an empty forget set; raise --fraction")
    return pool, count


def draw_forget_indices(labels: torch.Tensor, kind: str, fraction: float, classes: list[int] | None, seed: int) -> torch.Tensor:
    """Sorted forget-set indices.

    iid: `fraction` of the training set drawn uniformly. noniid: `fraction` of the training set drawn
    only from `classes` (the paper's CIFAR-10 forget set uses classes 2 and 5). class: every example
    of `classes` (`fraction` of each of them when below 1).
    """
    pool, count = forget_pool(labels, kind, fraction, classes)
    generator = torch.Generator().manual_seed(seed)
    chosen = pool[torch.randperm(len(pool), generator=generator)[:count]]
    return chosen.sort().values


def distinct_forget_sets(labels: torch.Tensor, kind: str, fraction: float, classes: list[int] | None) -> int:
    """How many different forget sets `draw_forget_indices` can draw with these settings, over every seed: the
    subsets of its pool of its size (1 for `class` with fraction 1)."""
    pool, count = forget_pool(labels, kind, fraction, classes)
    return math.comb(len(pool), count)


def check_classes(classes: list[int], num_classes: int) -> None:
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"--classes {bad}: the dataset has classes 0..{num_classes - 1}")


def retain_indices(num_train: int, forget: torch.Tensor) -> torch.Tensor:
    """Every training index not in `forget`, sorted."""
    keep = torch.ones(num_train, dtype=torch.bool)
    keep[forget] = False
    return torch.nonzero(keep).flatten()


def retain_sample(retain: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` retain indices (all of them when fewer) drawn at random with `seed`, sorted: the retain side of a
    gradient contrast such as MSG's, as large as the forget set."""
    generator = torch.Generator().manual_seed(seed)
    return retain[torch.randperm(len(retain), generator=generator)[:count]].sort().values
