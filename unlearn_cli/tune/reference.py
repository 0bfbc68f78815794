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

Usage:
    parts = tuning_parts(test_labels, forget_labels, seed=0)
    parts.reference, parts.validation, parts.reported   # sorted int64 test-set positions
    parts.tuning                                          # R and V: all that tuning may look at
    tuning_half, reported = halve_test_set(test_labels, seed=0)   # the reported part without a forget set
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
