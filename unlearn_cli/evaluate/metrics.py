"""Evaluation metrics as plain dicts of numbers: accuracies, MIA scores, gaps to the oracle, parameters changed.

Metric keys (all in %): forget_accuracy, retain_accuracy, test_accuracy and mia_<feature> for every MIA
feature (mia_correctness, mia_confidence, mia_entropy, mia_m_entropy, mia_prob). When the forget set carries a
manipulation of the training data (corrective unlearning; Goel et al. 2024, "Corrective Machine Unlearning"),
the training set is measured as the model was trained on it, and three more keys come beside them:
repaired_accuracy (the manipulated examples against their true labels), remembered_accuracy (against the
manipulated labels: forget_accuracy by another name) and, for a poison, attack_success_rate (the share of
the test set's images of other classes than the target that the model puts in the target class once the
trigger is stamped on them). test_accuracy is on the clean test set.

Usage:
    metrics = evaluate_outputs(train_logits, train_labels, test_logits, test_labels, forget, members, nonmembers)
    gaps = oracle_gaps(metrics, oracle_metrics)   # {"gaps": {...}, "average_gap": …, "strong_average_gap": …}
    fraction_changed(unlearned.named_parameters(), parent.named_parameters())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import retain_indices
from unlearn_cli.engine import predict
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.keys import AVERAGE_GAP_METRICS, metric_keys, mia_key, oracle_gaps  # noqa: F401
from unlearn_cli.evaluate.mia import mia_scores, shadow_split

def accuracy_percent(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in % of logits [N, C] against labels [N]; NaN for an empty set."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * float((logits.argmax(1) == labels).double().mean())


def evaluate_outputs(
    train_logits: torch.Tensor,
    train_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    forget_indices: torch.Tensor,
    member_indices: torch.Tensor,
    nonmember_indices: torch.Tensor,
    seed: int = 0,
    true_forget_labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """Every metric of one model from its logits on the whole training set [N_train, C] and test set [N_test, C].

    Args:
        forget_indices: forget-set positions in the training set; the rest is the retain set.
        member_indices: shadow members, positions in the training set (drawn from the retain set).
        nonmember_indices: shadow non-members, positions in the test set.
        true_forget_labels: for a manipulated forget set, its examples' true labels (`train_labels` holds the
            labels it was trained with): adds repaired_accuracy and remembered_accuracy.
    """
    retain = retain_indices(len(train_labels), forget_indices)
    metrics = {
        "forget_accuracy": accuracy_percent(train_logits[forget_indices], train_labels[forget_indices]),
        "retain_accuracy": accuracy_percent(train_logits[retain], train_labels[retain]),
        "test_accuracy": accuracy_percent(test_logits, test_labels),
    }
    scores = mia_scores(train_logits[member_indices], train_labels[member_indices],
                        test_logits[nonmember_indices], test_labels[nonmember_indices],
                        train_logits[forget_indices], train_labels[forget_indices], seed=seed)
    metrics.update({mia_key(name): value for name, value in scores.items()})
    if true_forget_labels is not None:
        metrics["repaired_accuracy"] = accuracy_percent(train_logits[forget_indices], true_forget_labels)
        metrics["remembered_accuracy"] = metrics["forget_accuracy"]
    return metrics


@dataclass(frozen=True)
class Corrective:
    """What the corrective metrics need beside the data as trained: the forget examples' true labels, and for a
    poison the test set's other-class images with the trigger stamped, labelled with the target."""

    true_forget_labels: torch.Tensor  # int64 [K], in the order of the forget indices
    triggered: ImageData | None = None


def corrective_view(clean: ImageData, as_trained: ImageData, forget_set, seed: int) -> Corrective | None:
    """The `Corrective` of a forget set (None without a manipulation). `clean` is the data before the
    manipulation; `as_trained` after it, with the test set that is measured."""
    manipulation = forget_set.manipulation
    if manipulation is None:
        return None
    triggered = None
    if manipulation.kind == "poison":
        triggered = manipulation.view_unseen(as_trained, torch.arange(len(as_trained.test_labels)), seed)
    return Corrective(clean.train_labels[forget_set.indices], triggered)


def shadow_sets(data: ImageData, forget_indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The MIA's shadow members (training positions, drawn from the retain set) and non-members (test positions)."""
    retain = retain_indices(data.num_train, forget_indices)
    member_positions, nonmembers = shadow_split(data.train_labels[retain], data.test_labels, seed)
    return retain[member_positions], nonmembers


def model_metrics(model: torch.nn.Module, data: ImageData, forget_indices: torch.Tensor, members: torch.Tensor,
                  nonmembers: torch.Tensor, seed: int, batch_size: int = 512,
                  device: torch.device | str = "cpu", corrective: Corrective | None = None) -> dict[str, float]:
    """Every metric of `model` (already on `device`): its logits on the whole training and test sets, scored
    (and, with `corrective`, the corrective metrics)."""
    train_logits, train_labels = predict(model, data.batches("train", batch_size=batch_size, device=device))
    test_logits, test_labels = predict(model, data.batches("test", batch_size=batch_size, device=device))
    metrics = evaluate_outputs(train_logits, train_labels, test_logits, test_labels, forget_indices, members,
                               nonmembers, seed=seed,
                               true_forget_labels=None if corrective is None else corrective.true_forget_labels)
    if corrective is not None and corrective.triggered is not None:
        metrics["attack_success_rate"] = accuracy_percent(*predict(model, corrective.triggered.batches(
            "test", batch_size=batch_size, device=device)))
    return metrics


def fraction_changed(parameters: Iterable[tuple[str, torch.Tensor]], parent_parameters: Iterable[tuple[str, torch.Tensor]]) -> float:
    """Share of trainable parameter scalars whose value differs from the parent's (0 … 1).

    Both arguments are `named_parameters()`-like iterables; names and shapes must match.
    """
    mine, parents = dict(parameters), dict(parent_parameters)
    if set(mine) != set(parents):
        different = sorted(set(mine) ^ set(parents))
        raise UserError(f"the model and its parent have different parameters ({different[0]} …); "
                        f"compare a model with the checkpoint it was unlearned from")
    changed = total = 0
    for name, tensor in mine.items():
        reference = parents[name]
        if tensor.shape != reference.shape:
            raise UserError(f"parameter {name} has shape {tuple(tensor.shape)} in the model and "
                            f"{tuple(reference.shape)} in the parent; they are different architectures")
        changed += int((tensor.detach().cpu() != reference.detach().cpu()).sum())
        total += tensor.numel()
    return changed / max(1, total)
