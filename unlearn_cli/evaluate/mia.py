"""Membership-inference attack (MIA) scores, the protocol of Fan et al. 2023 (SalUn, `evaluation/SVC_MIA`).

An attacker learns to tell training members from non-members by one feature of the model's softmax
output, then judges the forget set. Shadow members are retain-set examples drawn with the label
distribution of the test set; shadow non-members are test-set examples; both sides hold the same
number of examples (with unequal sides the SVC degenerates to "everything is a non-member"). For each
feature an `SVC(C=3, gamma="auto", kernel="rbf")` is fit on members (label 1) vs non-members (label 0)
and predicts the forget set; the score is TN / |D_f| × 100, the share of forget examples judged unseen.

Features (a registry, one column block each):
    correctness  1 if argmax == label else 0                                   [N, 1]
    confidence   p_y, the softmax probability of the true label                [N, 1]
    entropy      −Σ_i p_i log p_i                                             [N, 1]
    m-entropy    −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)  (Song & Mittal 2021, "Systematic
                 evaluation of privacy risks of machine learning models", eq. 5; SalUn's code swaps
                 the two logarithms, this is the published formula)            [N, 1]
    prob         the softmax vector                                             [N, C]

Usage:
    members, nonmembers = shadow_split(retain_labels, test_labels, seed=0)
    scores = mia_scores(retain_logits[members], retain_labels[members], test_logits[nonmembers],
                        test_labels[nonmembers], forget_logits, forget_labels, seed=0)
    scores["correctness"]   # % of forget examples predicted non-member
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.keys import SVC_SETTINGS  # the MIA's SVC, also recorded in results
from unlearn_cli.registry import Registry

FeatureFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (probabilities [N, C], labels [N]) -> [N, d]
FEATURES: Registry[FeatureFn] = Registry("MIA feature")
LOG_CLAMP = 1e-30  # smallest probability inside a logarithm (m-entropy), as in SalUn's code


def _true_class(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return probabilities.gather(1, labels[:, None])  # [N, 1]


@FEATURES.register("correctness")
def correctness(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (probabilities.argmax(1) == labels).to(probabilities.dtype)[:, None]


@FEATURES.register("confidence")
def confidence(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return _true_class(probabilities, labels)


@FEATURES.register("entropy")
def entropy(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(probabilities, probabilities).sum(1, keepdim=True)  # 0·log 0 = 0


@FEATURES.register("m-entropy")
def modified_entropy(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Song & Mittal 2021: −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)."""
    log_p = probabilities.clamp_min(LOG_CLAMP).log()
    log_not_p = (1 - probabilities).clamp_min(LOG_CLAMP).log()
    is_true = torch.zeros_like(probabilities, dtype=torch.bool).scatter_(1, labels[:, None], True)
    terms = torch.where(is_true, (1 - probabilities) * log_p, probabilities * log_not_p)
    return -terms.sum(1, keepdim=True)


@FEATURES.register("prob")
def probability_vector(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return probabilities


def list_features() -> list[str]:
    return FEATURES.names()


def shadow_split(retain_labels: torch.Tensor, test_labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the shadow members (into the retain set) and non-members (into the test set).

    Members follow the test set's label distribution. When the retain set holds every class at least
    as often as the test set, the members copy the test set's per-class counts and the non-members are
    the whole test set. Otherwise both sides shrink by the same factor (the largest one that the
    scarcest class allows), per-class counts rounded down and drawn at random (seeded), so the two sides
    stay equal in size and label distribution. Classes absent from the retain set (a forgotten class)
    are left out of both sides.

    Returns:
        (member positions [M] into retain_labels, non-member positions [M] into test_labels), sorted.
    """
    retain_labels, test_labels = retain_labels.long().cpu(), test_labels.long().cpu()
    num_classes = int(torch.cat([retain_labels, test_labels, torch.zeros(1, dtype=torch.long)]).max()) + 1
    retain_counts = torch.bincount(retain_labels, minlength=num_classes)
    test_counts = torch.bincount(test_labels, minlength=num_classes)
    usable = (retain_counts > 0) & (test_counts > 0)
    if not bool(usable.any()):
        raise UserError("the MIA needs retain and test examples of at least one common class; "
                        "the forget set covers the whole training set or the test set is empty")
    scale = min(1.0, float((retain_counts[usable].double() / test_counts[usable].double()).min()))
    scaled = (test_counts.double() * scale + 1e-9).floor().long()  # + 1e-9: 40 · 0.25 must stay 10
    take = torch.where(usable, torch.minimum(scaled, torch.minimum(test_counts, retain_counts)), 0)
    generator = torch.Generator().manual_seed(seed)

    def draw(labels: torch.Tensor) -> torch.Tensor:
        chosen = []
        for label in torch.nonzero(take).flatten().tolist():
            pool = torch.nonzero(labels == label).flatten()
            chosen.append(pool[torch.randperm(len(pool), generator=generator)[: int(take[label])]])
        return torch.cat(chosen).sort().values

    return draw(retain_labels), draw(test_labels)


def _subsample(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`size` sorted positions out of `count`, drawn at random (all of them when size == count)."""
    if size == count:
        return torch.arange(count)
    return torch.randperm(count, generator=generator)[:size].sort().values


def _fit_predict(members: np.ndarray, nonmembers: np.ndarray, forget: np.ndarray) -> np.ndarray:
    """Fit the SVC on members (1) vs non-members (0) and predict `forget`; returns labels [K].

    Identical (feature, label) rows are fit once with their count as sample weight: in the SVM dual,
    k copies of a point with C each are the same problem as one point with C·k, so the fit is the same
    and much faster when features repeat (correctness takes two values; confidences saturate at 1).
    Forget rows are likewise predicted once per distinct value.
    """
    inputs = np.concatenate([members, nonmembers])
    targets = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    rows, counts = np.unique(np.column_stack([inputs, targets]), axis=0, return_counts=True)
    from sklearn.svm import SVC  # imported on use: scikit-learn's import slows every command's start

    classifier = SVC(**SVC_SETTINGS, cache_size=500)
    classifier.fit(rows[:, :-1], rows[:, -1], sample_weight=counts.astype(np.float64))
    distinct, inverse = np.unique(forget, axis=0, return_inverse=True)
    return classifier.predict(distinct)[inverse.reshape(-1)]


def features_of(name: str, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Feature `name` of the softmax of `logits` [N, C], as float64 numpy [N, d].

    The softmax and the features are computed in float32, the precision of the model's outputs (as in
    SalUn's code); confidences that saturate at 1 then coincide and are fit once (see `_fit_predict`).
    """
    probabilities = torch.softmax(logits.detach().cpu().float(), dim=1)
    return FEATURES.get(name)(probabilities, labels.detach().cpu().long()).double().numpy()


def mia_scores(
    member_outputs: torch.Tensor,
    member_labels: torch.Tensor,
    nonmember_outputs: torch.Tensor,
    nonmember_labels: torch.Tensor,
    forget_outputs: torch.Tensor,
    forget_labels: torch.Tensor,
    seed: int = 0,
    features: list[str] | None = None,
    workers: int = 2,
) -> dict[str, float]:
    """MIA score (%) per feature: the share of forget examples the attack judges non-members.

    Args:
        *_outputs: logits [N, C] of the evaluated model (softmax is taken here; log-probabilities work too).
        *_labels: true labels [N].
        seed: draws the subsample of the larger shadow side when members and non-members differ in number.
        features: names from `FEATURES` (default: all five).
        workers: features fit in parallel threads (libsvm releases the GIL).
    """
    names = list_features() if features is None else features
    if len(member_labels) == 0 or len(nonmember_labels) == 0 or len(forget_labels) == 0:
        raise UserError("the MIA needs shadow members, shadow non-members and a non-empty forget set")
    size = min(len(member_labels), len(nonmember_labels))
    generator = torch.Generator().manual_seed(seed)
    member_pick = _subsample(len(member_labels), size, generator)
    nonmember_pick = _subsample(len(nonmember_labels), size, generator)
    member_outputs, member_labels = member_outputs[member_pick], member_labels[member_pick]
    nonmember_outputs, nonmember_labels = nonmember_outputs[nonmember_pick], nonmember_labels[nonmember_pick]

    def score(name: str) -> float:
        predicted = _fit_predict(features_of(name, member_outputs, member_labels),
                                 features_of(name, nonmember_outputs, nonmember_labels),
                                 features_of(name, forget_outputs, forget_labels))
        return 100.0 * float((predicted == 0).mean())

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(names, pool.map(score, names)))
