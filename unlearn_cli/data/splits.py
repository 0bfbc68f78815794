"""Forget / retain splits as sorted index tensors over the training set (docs/files.md).

Usage:
    forget = draw_forget_indices(data.train_labels, kind="noniid", fraction=0.1, classes=[2, 5], seed=0)
    pool, count = forget_pool(data.train_labels, "class", 1.0, [2])  # what such draws take from, how many
    retain = retain_indices(data.num_train, forget)
    level = terciles(scores)                                      # 0 low, 1 mid, 2 high, -1 unscored; per example
    forget = draw_from_tercile(scores, "high", fraction=0.1, seed=0)
"""

from __future__ import annotations

import torch

from unlearn_cli.errors import UserError, flag

KINDS = ("iid", "noniid", "class")
MEMORIZATION = "memorization"  # the kind of a forget set drawn from one tercile of a memorization score
LEVELS = ("low", "mid", "high")  # the terciles of a memorization score, ascending


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
    return draw_from_pool(pool, count, seed)


def draw_from_pool(pool: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` of the indices in `pool`, drawn uniformly without replacement (seeded), sorted."""
    generator = torch.Generator().manual_seed(seed)
    chosen = pool[torch.randperm(len(pool), generator=generator)[:count]]
    return chosen.sort().values


def terciles(scores: torch.Tensor) -> torch.Tensor:
    """The tercile of each example's score [N]: 0 (low), 1 (mid) or 2 (high) among the examples with a finite score,
    -1 for the others (NaN: not scored). int64 [N].

    The n scored examples are ranked by score, ties by index (a stable sort), and rank k (from 0) goes to tercile
    ⌊3k / n⌋: the terciles' sizes differ by at most one, and the larger ones come first (n = 3q + 1: q + 1, q, q;
    n = 3q + 2: q + 1, q + 1, q), as numpy's `array_split` deals them out. Every example is in exactly one tercile,
    whatever the ties: examples of equal score at a boundary are split by their index.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    scored = torch.nonzero(torch.isfinite(scores)).flatten()
    order = scored[torch.sort(scores[scored], stable=True).indices]
    levels = torch.full((len(scores),), -1, dtype=torch.long)
    levels[order] = torch.div(3 * torch.arange(len(order)), max(1, len(order)), rounding_mode="floor")
    return levels


def tercile_pool(scores: torch.Tensor, level: str, fraction: float) -> tuple[torch.Tensor, int]:
    """(the examples in tercile `level` of `scores` (`terciles`), how many a forget set of `fraction` of the training
    set, N = len(scores), takes from them), checked."""
    if level not in LEVELS:
        raise UserError(f"{flag('level')} {level!r}: choose one of {', '.join(LEVELS)}")
    if not 0 < fraction <= 1:
        raise UserError(f"{flag('fraction')} {fraction}: must be in (0, 1]")
    pool = torch.nonzero(terciles(scores) == LEVELS.index(level)).flatten()
    count = round(fraction * len(scores))
    if count == 0:
        raise UserError(f"{flag('fraction')} {fraction} of {len(scores)} examples is an empty forget set; raise it")
    if count > len(pool):
        raise UserError(f"{flag('fraction')} {fraction} asks for {count} examples but the {level} tercile holds only "
                        f"{len(pool)}; lower {flag('fraction')} to at most {len(pool) / len(scores):.4f}")
    return pool, count


def draw_from_tercile(scores: torch.Tensor, level: str, fraction: float, seed: int) -> torch.Tensor:
    """Sorted forget-set indices: `fraction` of the training set (N = len(scores)) drawn uniformly from the examples
    in tercile `level` (low, mid or high) of `scores` (`terciles`)."""
    return draw_from_pool(*tercile_pool(scores, level, fraction), seed)


def check_classes(classes: list[int], num_classes: int) -> None:
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"--classes {bad}: the dataset has classes 0..{num_classes - 1}")


def retain_indices(num_train: int, forget: torch.Tensor) -> torch.Tensor:
    """Every training index not in `forget`, sorted."""
    keep = torch.ones(num_train, dtype=torch.bool)
    keep[forget] = False
    return torch.nonzero(keep).flatten()


def retain_sample(num_train: int, forget_indices: torch.Tensor, seed: int, size: int) -> torch.Tensor:
    """At most `size` training positions outside the forget set, drawn by `seed`; sorted (tune's retain sample, the
    retain side of MSG's gradient contrast)."""
    return draw_from_pool(retain_indices(num_train, forget_indices), size, seed)
