"""The depletion estimate (tune/depletion.py): the shares, the smoothed errors, the learning-curve exponent and drop
and the prior shift worked by hand on made-up accuracies and logits, the read-out with a forget set's class mix, the
subsample's per-class shares, and a tiny run on the digits MLP that returns finite drops and counts its work."""

from __future__ import annotations

import math

import pytest
import torch

from unlearn_cli.cost import Work
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.lineage import dataset_for
from unlearn_cli.tune.depletion import (Curve, Depletion, Fit, class_drops, depleted_shares, expected_forget_accuracy,
                                        expected_reference_accuracy, learning_curve, prior_drops, size_drops,
                                        size_exponents, smoothed_error, subsample)
from unlearn_cli.tune.reference import halve_test_set


def test_shares_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])  # class 3: 1 example, none removed; class 4: none at all
    forget = torch.tensor([0, 1, 4])
    shares = depleted_shares(labels, forget, num_classes=5)
    assert shares.tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]


def test_smoothed_error_by_hand():
    # 9 of 10 right: 100 · (1 + ½) / 11; all right: 100 · ½ / 11, never 0
    errors = smoothed_error(torch.tensor([9, 10]), torch.tensor([10, 10]))
    assert errors.tolist() == pytest.approx([150 / 11, 50 / 11])


def test_exponent_and_size_drop_by_hand():
    parent = torch.tensor([10.0, 20.0, 30.0])
    # at a quarter of the data: class 0's error doubles (b = log 2 / log 4 = ½), class 1's is unchanged (b = 0),
    # class 2's falls (b would be negative: more data hurting is taken as b = 0)
    exponents = size_exponents(parent, torch.tensor([[20.0, 20.0, 20.0]]), [0.25])
    assert exponents.tolist() == pytest.approx([0.5, 0.0, 0.0])
    # two fits, at ¼ (error ×4) and ½ (×2): log-ratios 2 log 2 and log 2 at −log f = 2 log 2 and log 2 → b = 1
    both = size_exponents(torch.tensor([10.0]), torch.tensor([[40.0], [20.0]]), [0.25, 0.5])
    assert both.tolist() == pytest.approx([1.0])
    # half of class 0 removed: its error grows by (½)^−½ = √2, a drop of 10 (√2 − 1); s = 0 leaves class 1 alone;
    # class 2 removed whole goes to 100 % error
    drops = size_drops(parent, torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.5, 0.5, 0.5]))
    assert drops.tolist() == pytest.approx([10 * (math.sqrt(2) - 1), 0.0, 70.0])
    with pytest.raises(UserError, match="fraction"):
        size_exponents(parent, torch.tensor([[20.0, 20.0, 20.0]]), [1.0])


def test_prior_shift_by_hand():
    # four class-0 examples whose logit margins over class 1 are 0.2, 0.5, 1.0 and 3.0; halving class 0's prior
    # subtracts log 2 = 0.69 from its logit: the first two flip to class 1, so class 0 loses 50 points
    margins = torch.tensor([0.2, 0.5, 1.0, 3.0])
    logits = torch.stack([margins, torch.zeros(4)], 1)
    labels = torch.zeros(4, dtype=torch.long)
    # two class-1 examples, one that class 0 beat by 0.5: with class 0's prior halved it is right
    logits = torch.cat([logits, torch.tensor([[0.5, 0.0], [0.0, 1.0]])])
    labels = torch.cat([labels, torch.ones(2, dtype=torch.long)])
    drops = prior_drops(logits, labels, torch.tensor([0.5, 0.0]))
    assert drops.tolist() == pytest.approx([50.0, -50.0])
    # a class removed whole is never predicted
    assert prior_drops(logits, labels, torch.tensor([1.0, 0.0])).tolist() == pytest.approx([100.0, -50.0])


def _made_up_estimate() -> Depletion:
    """Two classes of 10 test examples (logits: the parent gets 9 and 8 right) and one fit at a quarter of the data
    that gets 7 and 8 right."""
    labels = torch.tensor([0] * 10 + [1] * 10)
    logits = torch.zeros(20, 2)
    logits[:9, 0] = 2.0  # 9 of class 0 right with margin 2 (the tenth: a tie, read as class 0)
    logits[9] = torch.tensor([0.0, 1.0])  # class 0's tenth wrong
    logits[10:18, 1] = 0.5  # 8 of class 1 right with margin 0.5
    logits[18:, 0] = 1.0  # class 1's last two wrong
    fit = Fit(0.25, 0, 60, 5, torch.tensor([7, 8]), Work(10, 5))
    curve = Curve(logits, labels, (fit,), Work(30, 5))
    return Depletion(torch.tensor([0.5, 0.0], dtype=torch.float64), curve, curve.work, retrain_units=100)


def test_read_out_with_the_forget_sets_class_mix_by_hand():
    estimate = _made_up_estimate()
    assert estimate.parent_accuracy.tolist() == pytest.approx([90.0, 80.0])
    # the prior: class 0's margins of 2 survive −log 2, so no drop; class 1's 0.5 margins are not touched
    assert estimate.prior_drops.tolist() == pytest.approx([0.0, 0.0])
    # the size: smoothed errors (wrong + ½) / 11: parent 1.5 and 2.5, the fit 3.5 and 2.5 (× 100/11);
    # b_0 = log(3.5 / 1.5) / log 4, and half of class 0 removed: 1.5 · (2^b_0 − 1) · 100/11
    b_0 = math.log(3.5 / 1.5) / math.log(4)
    class_0 = 1.5 * (2 ** b_0 - 1) * 100 / 11
    assert estimate.drops.tolist() == pytest.approx([class_0, 0.0])
    forget_labels = torch.tensor([0, 0, 0, 1])  # F's mix: 3/4 class 0, 1/4 class 1
    assert estimate.forget_drop(forget_labels) == pytest.approx(0.75 * class_0)
    assert estimate.expected_accuracy(forget_labels) == pytest.approx(0.75 * (90 - class_0) + 0.25 * 80)
    assert estimate.cost_x_retrain == pytest.approx((30 + 2 * 5) / 100)
    # the same read off a candidate's logits on R: class 0 right 2 of 2, class 1 right 1 of 2
    reference_logits = torch.eye(2)[[0, 0, 1, 0]]
    reference_labels = torch.tensor([0, 0, 1, 1])
    target = expected_reference_accuracy(reference_logits, reference_labels, forget_labels, estimate.drops)
    assert target == pytest.approx(0.75 * (100 - class_0) + 0.25 * 50)


def test_subsample_takes_each_class_share_and_nests():
    labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 20)
    quarter = subsample(labels, 0.25, seed=3)
    assert torch.bincount(labels[quarter], minlength=3).tolist() == [10, 10, 5]
    half = subsample(labels, 0.5, seed=3)
    assert bool(torch.isin(quarter, half).all())  # a smaller fraction takes the first of the same draw
    with pytest.raises(UserError, match="fraction"):
        subsample(labels, 0.0, seed=3)


def test_a_tiny_run_on_the_digits_mlp_counts_its_work(tiny_run):
    parent = load_checkpoint(str(tiny_run["original"]))
    data = dataset_for(parent, None)
    forget = read_forget_set(str(tiny_run["forget"]), num_train=data.num_train, dataset="digits").indices
    tuning, _ = halve_test_set(data.test_labels, 0)
    accuracy, estimate = expected_forget_accuracy(parent, data, forget, tuning, fractions=(0.25,), repeats=1)
    assert estimate.drops.shape == (10,) and bool(torch.isfinite(estimate.drops).all())
    assert math.isfinite(accuracy) and 0 <= accuracy <= 100
    assert float(estimate.shares[2]) > 0 and float(estimate.shares[0]) == 0
    # the meter saw the fit's epochs over its subsample and both passes over the tuning half (the parent's, the fit's)
    epochs = parent.config["epochs"]
    trained = epochs * estimate.curve.fits[0].size
    assert estimate.work == Work(trained + 2 * len(tuning), trained)
    assert estimate.retrain_units == 3 * epochs * (data.num_train - len(forget))
    assert estimate.cost_x_retrain == pytest.approx(estimate.work.units / estimate.retrain_units)
    # a curve made once serves another forget set at no further work; the same seeds give the same fit
    curve = learning_curve(parent, data, tuning, fractions=(0.25,), repeats=1)
    assert torch.equal(curve.fits[0].correct, estimate.curve.fits[0].correct)
    again = class_drops(parent, data, forget[: len(forget) // 2], tuning, curve=curve)
    assert again.work == Work() and bool(torch.isfinite(again.drops).all())
