"""Calibration after unlearning: one scale on the logits, fitted without an oracle, folded into the classifier head.

An unlearned model can match retraining's accuracies while its confidence scale is off everywhere: the logit-scaled
confidence φ = z_y − logsumexp_{j≠y} z_j (the statistic the NeurIPS 2023 challenge's ε, the likelihood-ratio
attack and KL all read; Triantafillou et al. 2024) then tells it from retrained models on any example, not only
on the forget set. Multiplying the logits by s > 0 changes no prediction (the argmax is the same) and moves
every φ; `fit_scale` picks the s whose φ quantiles on a set of examples match a target's.

The target, without an oracle: the parent's φ on unseen examples (the validation part of the test set) of the
classes the forget set does not deplete. A retrained model was trained on nearly the same data of those
classes as the parent, so on examples neither saw it should be about as confident as the parent; the retain
set would overshoot, since the parent fits it more tightly than a retrained model does. A class is depleted
when the forget set removes more than `DEPLETED` times the overall share of it, or more than half of it (a class
pair of a non-IID set, a forgotten class), so a small IID forget set keeps every class.

`fold_scale` multiplies the weights and bias of the last linear layer, so the file itself gives the calibrated
outputs wherever it is loaded; that layer (only by the scale) is the one declared exception to the mask.

Usage:
    keep = undepleted_classes(train_labels, forget_indices)          # bool [C]
    scale = fit_scale(logits, labels, target_phi)                     # the model's and the parent's, same examples
    fold_scale(model, scale)                                          # in place: logits × scale
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.epsilon import logit_scaled_confidence
from unlearn_cli.models import classifier_head_names

DEPLETED = 2.0  # a class losing more than this many times the overall share of its examples is depleted,
MOST = 0.5  # and so is one losing more than this share of them, however much the forget set takes overall
QUANTILES = (0.25, 0.5, 0.75)  # the φ quantiles matched
LOG_SCALE_RANGE = (math.log(1e-2), math.log(1e2))  # the scales searched
GRID = 401  # scales tried on a log grid before the refinement


def undepleted_classes(train_labels: torch.Tensor, forget_indices: torch.Tensor,
                       num_classes: int | None = None) -> torch.Tensor:
    """bool [C]: the classes the forget set removes at most min(`DEPLETED` × the overall share, `MOST`) of."""
    num_classes = num_classes or int(train_labels.max()) + 1
    totals = torch.bincount(train_labels, minlength=num_classes).double()
    removed = torch.bincount(train_labels[forget_indices], minlength=num_classes).double()
    overall = len(forget_indices) / max(1, len(train_labels))
    share = torch.where(totals > 0, removed / totals.clamp(min=1), torch.zeros_like(totals))
    return (share <= min(DEPLETED * overall, MOST)) & (totals > 0)


def check_sample(labels: torch.Tensor, what: str) -> None:
    """A calibration sample must hold examples of at least two classes; checked before any work where it can be."""
    if len(labels) == 0:
        raise UserError(f"calibration: {what} holds no example to fit the scale on; calibrate on a test set that "
                        f"has examples of the classes the forget set leaves, or drop --calibrate")
    if len(torch.unique(labels)) < 2:
        raise UserError(f"calibration: {what} holds examples of one class only, too few to fit a confidence "
                        f"scale; use a forget set that leaves at least two classes, or drop --calibrate")


def check_target(target_phi: torch.Tensor, what: str) -> None:
    """The φ to match (the parent's) must be finite."""
    if len(target_phi) == 0 or not bool(torch.isfinite(target_phi).all()):
        raise UserError(f"calibration: the parent's confidences on {what} are empty or not finite; the parent "
                        f"model is broken, so there is no scale to match")


def _mismatch(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, log_scale: float) -> float:
    quantiles = torch.tensor(QUANTILES, dtype=torch.float64)
    phi = logit_scaled_confidence(logits * math.exp(log_scale), labels)
    return float(((torch.quantile(phi, quantiles) - targets) ** 2).sum())


def fit_scale(logits: torch.Tensor, labels: torch.Tensor, target_phi: torch.Tensor,
              what: str = "the calibration sample") -> float:
    """The s in [0.01, 100] whose φ(s · logits) matches `target_phi` best at the quartiles (least squares):
    a log grid, then golden-section search between the best point's neighbours.

    Args:
        logits: [N, C] the model's logits; labels: [N] true classes; target_phi: [M] the φ to match.
    """
    check_sample(labels, what)
    if not bool(torch.isfinite(logits).all()):
        raise UserError(f"calibration: the model's logits on {what} are not finite; the unlearned model is "
                        f"broken (lower the learning rate), so there is no scale to fit")
    check_target(target_phi, what)
    logits = logits.detach().to(torch.float64)
    targets = torch.quantile(target_phi.detach().to(torch.float64), torch.tensor(QUANTILES, dtype=torch.float64))
    low, high = LOG_SCALE_RANGE
    grid = [low + (high - low) * i / (GRID - 1) for i in range(GRID)]
    errors = [_mismatch(logits, labels, targets, point) for point in grid]
    best = min(range(GRID), key=errors.__getitem__)
    a, b = grid[max(0, best - 1)], grid[min(GRID - 1, best + 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # golden section: the bracket shrinks to 0.618^40 of one grid step
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if _mismatch(logits, labels, targets, c) <= _mismatch(logits, labels, targets, d):
            b = d
        else:
            a = c
    candidates = [(errors[best], grid[best]), (_mismatch(logits, labels, targets, (a + b) / 2), (a + b) / 2)]
    return math.exp(min(candidates)[1])


@torch.no_grad()
def fold_scale(model: nn.Module, scale: float) -> None:
    """Multiply the classifier head (the last linear layer's weight and bias) by `scale`, in place: the model's
    logits become `scale` times what they were, and its predictions stay as they were."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"a calibration scale must be finite and positive, not {scale!r}")
    names = classifier_head_names(model)
    if not names:
        raise UserError("calibration: the model has no linear classifier head to fold a scale into; drop --calibrate")
    parameters = dict(model.named_parameters())
    for name in names:
        parameters[name].mul_(scale)
