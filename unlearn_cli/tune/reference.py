"""The oracle-free reference: held-out test examples with the forget set's class mix.

For the oracle (a model retrained without the forget set) the forget set is just more unseen data, so its
accuracy and its distribution of true-class probabilities on the forget set should match those on unseen
examples of the same classes. The test set is split, seeded, into three disjoint parts:

    reference R   per class c, as many test examples as the forget set has of c, at most half of the
                  test examples of c (the rest stay for the other parts)
    validation V  half of what is left: accuracy that tuning must not lose
    reported      the other half, which tuning never looks at

Usage:
    parts = tuning_parts(test_labels, forget_labels, seed=0)
    parts.reference, parts.validation, parts.reported   # sorted int64 test-set positions
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TuningParts:
    reference: torch.Tensor  # int64 [R], test-set positions with the forget set's class mix
    validation: torch.Tensor  # int64 [V]
    reported: torch.Tensor  # int64 [T - R - V]: left for the evaluation


def tuning_parts(test_labels: torch.Tensor, forget_labels: torch.Tensor, seed: int) -> TuningParts:
    """Split the test set into reference, validation and reported parts (disjoint, deterministic per seed)."""
    num_classes = int(max(int(test_labels.max()), int(forget_labels.max()))) + 1
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(test_labels), generator=generator)
    wanted = torch.bincount(forget_labels, minlength=num_classes)
    reference, rest = [], []
    for label in range(num_classes):
        members = order[test_labels[order] == label]
        take = min(int(wanted[label]), len(members) // 2)
        reference.append(members[:take])
        rest.append(members[take:])
    rest = torch.cat(rest)
    rest = rest[torch.randperm(len(rest), generator=generator)]
    half = len(rest) // 2
    return TuningParts(reference=torch.cat(reference).sort().values, validation=rest[:half].sort().values,
                       reported=rest[half:].sort().values)
