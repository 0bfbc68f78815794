"""The relearning test: how fast a model regains the forget set when it is finetuned on a small part of it.

A model that hid the forget set F rather than forgot it recovers F's accuracy after a few SGD steps on a few of
F's examples much faster than a model retrained without F (Golatkar et al. 2020, "Eternal Sunshine of the Spotless
Net", relearn time; Lynch et al. 2024, "Eight Methods to Evaluate Robust Unlearning in LLMs", and Hu et al. 2024,
"Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks"). A copy of each model is finetuned on
a seeded part A of F, at each learning rate, for S steps of SGD (momentum 0.9, constant rate, a batch of A per
step, normalization layers in training mode as in any finetuning), through the one training loop (`engine.run_loop`); after every step its
accuracy on the rest R = F ∖ A is measured (step 0: before any step). A itself is never scored: accuracy on A
measures fitting, not recovered memory (finetune on some forgotten examples, score the others: Deeb & Roger 2024,
"Do Unlearning Methods Remove Information from Language Model Weights?"). The input models are never changed.

The relearn gap of a model against the oracle, per learning rate, in accuracy points (docs/relearn.md):

    gap = (1/S) · Σ_{s=1..S} (acc_model(R, s) − acc_oracle(R, s))

the mean area between the two curves over the relearning steps. 0: the model relearns like one that never saw
F; > 0: it recovers F faster (it still holds F); < 0: slower. Step 0 is left out: it is the forget-accuracy gap
that `evaluate` reports already.

Usage:
    options = RelearnOptions(relearn=True, relearn_part=0.5, relearn_batch_size=8)
    check_relearn_options(options)
    split = split_forget_set(forget_indices, options)              # .part (A), .rest (R), disjoint and seeded
    curves = relearn_curves(model, data, split, options, device)   # {lr: [acc on R at step 0, 1, …, S]}
    relearn_gap(curves[0.1], oracle_curves[0.1])
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import draw_from_pool
from unlearn_cli.engine import LoopSettings, cross_entropy_loss, predict, run_loop, training_mode
from unlearn_cli.errors import UserError, flag
from unlearn_cli.evaluate.relearn_options import RelearnOptions, check_relearn_options  # noqa: F401
from unlearn_cli.evaluate.aggregate import summarize
from unlearn_cli.evaluate.metrics import accuracy_percent

MOMENTUM = 0.9  # SGD momentum of the relearning steps, the training recipe's


@dataclass(frozen=True)
class RelearnSplit:
    """The forget set split for relearning: the part finetuned on and the rest scored (training indices)."""

    part: torch.Tensor  # int64 [|A|], sorted
    rest: torch.Tensor  # int64 [|F| − |A|], sorted

    def fields(self, options: RelearnOptions) -> dict:
        """The settings a results or audit file records beside the curves."""
        return {"part": options.relearn_part, "part_size": len(self.part), "rest_size": len(self.rest),
                "seed": options.relearn_seed, "steps": options.relearn_steps,
                "batch_size": options.relearn_batch_size, "momentum": MOMENTUM}


def split_forget_set(forget_indices: torch.Tensor, options: RelearnOptions) -> RelearnSplit:
    """A seeded part A of the forget set (round(part · |F|) examples, halves up) and the rest; a UserError when A
    holds less than one batch or leaves no rest to score."""
    count = len(forget_indices)
    part_flag, batch_flag = flag("relearn_part"), flag("relearn_batch_size")
    if count < 2:
        raise UserError(f"the forget set holds {count} example; relearning needs at least 2 (a part to finetune on "
                        f"and a rest to score): use a larger forget set, or leave out {flag('relearn')}")
    size = math.floor(options.relearn_part * count + 0.5)
    batch = options.relearn_batch_size
    if size >= count:
        raise UserError(f"{part_flag} {options.relearn_part:g} takes all {count} examples of the forget set and "
                        f"leaves none to score relearning on; give a part below 1, e.g. {part_flag} 0.1")
    if size < batch:
        if batch >= count:
            fix = f"lower {batch_flag} below {count} (the forget set's size) and raise {part_flag} to hold one batch"
        elif size >= 1:
            fix = f"raise {part_flag} to {batch / count:.3g} or lower {batch_flag} to {size}"
        else:
            fix = f"raise {part_flag} to {batch / count:.3g}"
        raise UserError(f"{part_flag} {options.relearn_part:g} of the forget set's {count} examples is {size}, fewer "
                        f"than one batch of {batch_flag} {batch}; {fix}")
    indices = torch.as_tensor(forget_indices, dtype=torch.long)
    part = draw_from_pool(indices, size, options.relearn_seed)
    return RelearnSplit(part, indices[~torch.isin(indices, part)].sort().values)


def _full_batches(data: ImageData, split: RelearnSplit, options: RelearnOptions, device: torch.device):
    """(epoch -> shuffled batches of the part, each of exactly relearn_batch_size examples; batches per epoch)."""
    batch = options.relearn_batch_size

    def batches_for_epoch(epoch: int):
        for inputs, labels in data.batches("train", split.part, batch, shuffle=True, seed=options.relearn_seed,
                                           epoch=epoch, device=device):
            if len(labels) == batch:  # the epoch's remainder is left out: every step sees a full batch
                yield inputs, labels

    return batches_for_epoch, len(split.part) // batch


def relearn_curves(model: nn.Module, data: ImageData, split: RelearnSplit, options: RelearnOptions,
                   device: torch.device, batch_size: int = 512) -> dict[float, list[float]]:
    """{learning rate: accuracy (%) on the rest at step 0, 1, …, S} of copies of `model` finetuned on the part.

    Each copy takes relearn_steps steps of SGD on cross-entropy (momentum MOMENTUM, constant rate, batches seeded
    by relearn_seed, the same for every model), its normalization layers in training mode as in any finetuning (with
    their statistics frozen a BatchNorm net loses the scale invariance its training rate relied on: the Fashion-MNIST
    CNN diverged within 10 steps at lr 0.03); step 0 is the model's own accuracy on the rest. `model` itself is not changed; `batch_size` is the
    inference batch of the scoring.
    """
    return {rate: _relearn_at(rate, model, data, split, options, device, batch_size) for rate in options.relearn_lr}


def _relearn_at(rate: float, model: nn.Module, data: ImageData, split: RelearnSplit, options: RelearnOptions,
                device: torch.device, batch_size: int) -> list[float]:
    """The accuracy curve on the rest of a copy of `model` relearning the part at learning rate `rate`."""
    relearned = copy.deepcopy(model).to(device)

    def rest_accuracy() -> float:
        return accuracy_percent(*predict(relearned, data.batches("train", split.rest, batch_size, device=device)))

    curve = [rest_accuracy()]

    def score_step(info: dict) -> None:
        curve.append(rest_accuracy())
        training_mode(relearned, freeze_bn=False)  # predict left the copy in eval mode

    batches_for_epoch, steps_per_epoch = _full_batches(data, split, options, device)
    settings = LoopSettings(epochs=math.ceil(options.relearn_steps / steps_per_epoch), lr=rate, momentum=MOMENTUM,
                            schedule="constant", max_steps=options.relearn_steps)
    try:
        run_loop(relearned, cross_entropy_loss, batches_for_epoch, settings, freeze_bn=False,
                 steps_per_epoch=steps_per_epoch, on_step=score_step)
    except UserError:  # the loop's only refusal without a mask: a loss that is no longer finite
        raise UserError(f"relearning diverged at {flag('relearn_lr')} {rate:g} (the loss became non-finite); give "
                        f"smaller learning rates") from None
    return curve


def relearn_gap(curve: list[float], oracle_curve: list[float]) -> float:
    """gap = (1/S) Σ_{s=1..S} (curve[s] − oracle_curve[s]), in accuracy points: the mean area between a model's
    relearning curve on the rest of the forget set and the oracle's, step 0 left out (docs/relearn.md)."""
    if len(curve) != len(oracle_curve) or len(curve) < 2:
        raise ValueError(f"curves of {len(curve)} and {len(oracle_curve)} points: both need step 0 and the same "
                         f"steps after it")
    return float(np.mean(np.asarray(curve[1:], dtype=float) - np.asarray(oracle_curve[1:], dtype=float)))


def relearn_record(curves: dict[float, list[float]], oracle_curves: dict[float, list[float]], split: RelearnSplit,
                   options: RelearnOptions) -> dict:
    """A result's `relearn` object: the settings, and per learning rate both curves and the gap."""
    return {**split.fields(options),
            "curves": [{"lr": rate, "accuracy": curves[rate], "oracle_accuracy": oracle_curves[rate],
                        "gap": relearn_gap(curves[rate], oracle_curves[rate])} for rate in curves]}


def paired_gaps(first: np.ndarray, second: np.ndarray) -> dict:
    """The relearn gap of two pools' curves at one learning rate ([N₁, S + 1] and [N₂, S + 1]), model i of the first
    paired with model i of the second (min(N₁, N₂) pairs): the mean gap and its 95% Student-t margin over the pairs
    (`aggregate.summarize`), the interval, and each side's mean curve."""
    pairs = min(len(first), len(second))
    summary = summarize([relearn_gap(list(first[i]), list(second[i])) for i in range(pairs)])
    interval = None if summary.n < 2 else [summary.mean - summary.margin, summary.mean + summary.margin]
    return {"gap": summary.mean, "margin": summary.margin if summary.n >= 2 else None, "pairs": summary.n,
            "interval": interval,
            "curves": {"first": first.mean(axis=0).tolist(), "second": second.mean(axis=0).tolist()}}
