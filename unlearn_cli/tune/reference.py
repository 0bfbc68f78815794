"""The oracle-free reference: held-out test examples with the forget set's class mix.

For the oracle (a model retrained without the forget set) the forget set is just more unseen data, so its
accuracy and its distribution of true-class probabilities on the forget set should match those on unseen
examples of the same classes. The test set is split, seeded, into three disjoint parts:

    reported      half of every class, drawn from the seed alone: tuning never looks at it, and it is the
                  same half whatever the forget set, so settings tuned on a validation forget set and
                  reported on another forget set never saw the examples they are reported on
    reference R   from the other half, per class c as many examples as the forget set has of c, at most
                  half of that half's examples of c (the rest stay for V)
    validation V  the rest of the tuning half: accuracy that tuning must not lose

Beside them, from the training set: a seeded sample S of the retain set (`retain_fit`), and the validation forget
sets a search scores on (`draw_validation_sets`): the given forget set and more drawn by the split it records,
with the seeds after its own, so that a choice is made on more than one draw of the forget set.

Usage:
    parts = tuning_parts(test_labels, forget_labels, seed=0)
    parts.reference, parts.validation, parts.reported   # sorted int64 test-set positions
    parts.tuning                                          # R and V: all that tuning may look at
    tuning_half, reported = halve_test_set(test_labels, seed=0)   # the reported part without a forget set
    sample = retain_sample(num_train, forget_indices, seed=0)     # at most RETAIN_SAMPLE retain examples, sorted
    sets = draw_validation_sets(train_labels, forget_indices, "noniid", 0.1, [2, 5], seed=0, count=3)  # [(seed, indices)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearn_cli.data import splits
from unlearn_cli.errors import UserError, example, flag
from unlearn_cli.seeding import derive_seed

RETAIN_SAMPLE = 1024  # retain examples `retain_fit` is measured on
MAX_REDRAWS = 10_000  # seeds tried for the validation forget sets before giving up


@dataclass(frozen=True)
class TuningParts:
    reference: torch.Tensor  # int64 [R], test-set positions with the forget set's class mix
    validation: torch.Tensor  # int64 [V]
    reported: torch.Tensor  # int64 [T - R - V]: left for the evaluation

    @property
    def tuning(self) -> torch.Tensor:
        """R and V together, sorted: the test examples tuning may score on."""
        return torch.cat([self.reference, self.validation]).sort().values


def halve_test_set(test_labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tuning half, reported half) of the test set: per class, a seeded half (the odd one to the reported
    half); each a list of test-set positions, the tuning half in the seeded order."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(test_labels), generator=generator)
    tuning, reported = [], []
    for label in torch.unique(test_labels).tolist():
        members = order[test_labels[order] == label]
        half = len(members) // 2
        tuning.append(members[:half])
        reported.append(members[half:])
    return torch.cat(tuning), torch.cat(reported).sort().values


def tuning_parts(test_labels: torch.Tensor, forget_labels: torch.Tensor, seed: int) -> TuningParts:
    """Split the test set into reference, validation and reported parts (disjoint, deterministic per seed; the
    reported part depends on the seed and the test labels only)."""
    tuning, reported = halve_test_set(test_labels, seed)
    num_classes = int(max(int(test_labels.max()), int(forget_labels.max()))) + 1
    wanted = torch.bincount(forget_labels, minlength=num_classes)
    reference, validation = [], []
    for label in range(num_classes):
        members = tuning[test_labels[tuning] == label]
        take = min(int(wanted[label]), len(members) // 2)
        reference.append(members[:take])
        validation.append(members[take:])
    return TuningParts(reference=torch.cat(reference).sort().values, validation=torch.cat(validation).sort().values,
                       reported=reported)


def retain_sample(num_train: int, forget_indices: torch.Tensor, seed: int, size: int = RETAIN_SAMPLE) -> torch.Tensor:
    """At most `size` (RETAIN_SAMPLE) training positions outside the forget set, drawn by `seed`; sorted."""
    return splits.retain_sample(num_train, forget_indices, seed, size)


def draw_validation_sets(train_labels: torch.Tensor, given: torch.Tensor, kind: str, fraction: float,
                         classes: list[int] | None, seed: int, count: int, what: str = "the split",
                         memorization: tuple[torch.Tensor, str] | None = None) -> list[tuple[int, torch.Tensor]]:
    """`count` distinct forget sets as (seed, sorted indices): `given` (drawn with `seed`) first, then those
    `draw_forget_indices` gives with the first seeds after `seed` (`derive_seed(seed, k)`, k = 1, 2, …) that draw
    a set not taken yet (a memorization split, `memorization` = (its scores, its level): `draw_from_tercile`). A
    split that cannot give `count` distinct sets (`kind: class` with fraction 1 gives one, whatever the seed) is a
    UserError before anything is drawn; `what` names the split in it."""
    if memorization is not None:
        scores, level = memorization
        pool, size = splits.tercile_pool(scores, level, fraction)
        described = f"{kind}, level {level}, fraction {fraction:g}"
    else:
        pool, size = splits.forget_pool(train_labels, kind, fraction, classes)
        described = f"{kind}, fraction {fraction:g}{f', classes {classes}' if classes else ''}"
    available = math.comb(len(pool), size)  # the subsets of the pool of that size (1: every seed draws the same)
    if count > available:
        raise UserError(f"{flag('validation_sets')} {count}: {what} ({described}) gives only {available} distinct "
                        f"forget set{'s' if available != 1 else ''}, whatever the seed; pass "
                        f"{example('validation_sets', available)}")
    taken = [(seed, given)]
    for candidate in (derive_seed(seed, redraw) for redraw in range(1, 1 + MAX_REDRAWS)):
        if len(taken) == count:
            break
        indices = splits.draw_from_pool(pool, size, candidate)
        if not any(torch.equal(indices, drawn) for _, drawn in taken):
            taken.append((candidate, indices))
    if len(taken) < count:
        raise UserError(f"{flag('validation_sets')} {count}: {MAX_REDRAWS:,} seeds after {seed} drew only "
                        f"{len(taken)} distinct forget sets; pass {example('validation_sets', len(taken))}")
    return taken
