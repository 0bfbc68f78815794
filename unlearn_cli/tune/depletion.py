"""How much a model retrained without a forget set loses on the classes the forget set depletes, without an oracle.

For an IID forget set F, a model retrained without F is as accurate on F as on unseen examples of F's classes,
and a candidate that keeps the parent's features is about as accurate on those as the parent. A non-IID forget
set removes a share s_c of some classes' training examples (s_c = |F ∩ c| / |training set ∩ c|), so the
retrained model has seen fewer examples of them and is weaker on them: its acc(F) is its accuracy on unseen
examples of those classes, below the parent's by

    Δ_c = acc_c(trained on the full training set) − acc_c(trained with share s_c of class c removed)

(points, on unseen examples of class c). Removing share s_c of class c does two things, and Δ̂_c adds the two:

1. **The class prior shifts.** The retained training set holds class c in proportion π_c (1 − s_c) / (1 − |F|/N).
   When only the prior changes, the posterior changes by Bayes's rule, p′(y | x) ∝ p(y | x) · π′_y / π_y (Saerens,
   Latinne & Decaestecker 2002, "Adjusting the Outputs of a Classifier to New a Priori Probabilities"): in logits,
   z′_y = z_y + log(1 − s_y) up to a constant that no prediction depends on. So

       Δ̂_c(prior) = acc_c(parent's logits) − acc_c(parent's logits + log(1 − s))

   on unseen examples: one forward pass of the parent, no constant. A class with s_c = 1 is never predicted.

2. **Class c has fewer examples to learn from.** Learning curves are power laws in the number of examples m,
   ε(m) = α m^(−b) (Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically"; Cortes et al.
   1994, "Learning Curves: Asymptotic Values and Rate of Convergence", who fit them on small subsets to predict
   the error at the full size). The exponent b_c of class c comes from subsampled fits: the parent's
   architecture trained with the parent's recipe (`Checkpoint.config`: epochs, learning rate, batch size,
   momentum, weight decay) on a share f of every class's training examples (the class mix, so the prior, kept),
   its error e_c(f) measured beside the parent's e_c(1), and a line through the parent's point in log–log
   coordinates, fitted by least squares over the fits: b_c = Σ −log f · log(e_c(f) / e_c(1)) / Σ (log f)²,
   at least 0 (more data does not hurt). With class c's count scaled by (1 − s_c):

       Δ̂_c(size) = e_c(1) · ((1 − s_c)^(−b_c) − 1)

    Δ̂_c = min(acc_c(parent), Δ̂_c(prior) + Δ̂_c(size))

The errors and accuracies are measured on the positions given, the tuning half of the test set (tune/reference.py
`halve_test_set`), never the reported half; each error is the posterior mean under Jeffreys's prior,
100 · (wrong + ½) / (n + 1) (Brown, Cai & DasGupta 2001, "Interval Estimation for a Binomial Proportion"), so that
a class without test errors still has a logarithm. The subsampled fits do not depend on the forget set, so one
`learning_curve` serves every forget set of a parent (`class_drops(..., curve=...)`).

Why not the alternatives: a linear probe on the parent's features keeps what F taught those features, so its drop
would come out too small; the drop measured directly between a subsampled fit and the same fit without F's examples
overstates the drop at the full size (part of the error is irreducible and does not shrink with m) and varies much
with the fits' seeds; carrying that pair's ratio of errors to the parent was about as accurate on held-out class
pairs, but needs twice the fits, scatters more, and depends on the forget set, so no fit serves another
(examples/fashion-mnist/results/depletion.md measures these two). The constants are the fraction, repeats and epochs
of the fits (FRACTIONS, REPEATS, EPOCH_SHARE), chosen on class pairs other than those reported.

The work (the fits' training, every test pass) is counted with `cost.WorkMeter`, so the estimate's cost ×retrain
is stated beside the retraining it avoids: with FRACTIONS = (1/4,) and one repeat, 1/4 · N / (N − |F|) of a retrain
plus the test passes, about 0.31 for a 10% forget set of the 2,000-example Fashion-MNIST suite.

Plugging into the oracle-free objective (tune/objectives.py): `forget_gap` compares the candidate's acc(F) to its
acc(R), R the reference part of the test set with F's class mix; the retrained model's acc(F) is lower by
Σ_c w_c Δ̂_c, w_c = F's share of class c. So

    forget_gap = |acc(F) − (acc(R) − Σ_c w_c Δ̂_c)|
               = |acc(F) − expected_reference_accuracy(R logits, R labels, forget labels, estimate.drops)|

with acc(R) and the R logits the parent's: a candidate that is itself like a retrained model has already lost Δ on R.

`expected_reference_accuracy` weights each class of R by F's class mix, as R itself does when no class of R is
capped. An IID forget set gives no prior shift (s_c = |F| / N for every class) and a small size drop.

Usage:
    estimate = class_drops(parent, data, forget_indices, tuning_half)          # fits and passes, counted
    estimate.drops                              # Δ̂_c [C], points; estimate.prior_drops, estimate.size_drops
    estimate.expected_accuracy(forget_labels)   # the retrained model's expected acc(F), %
    estimate.cost_x_retrain                     # its work over the retraining's
    target = expected_reference_accuracy(reference_logits, reference_labels, forget_labels, estimate.drops)
    curve = learning_curve(parent, data, tuning_half)                           # reusable across forget sets
    estimate = class_drops(parent, data, other_forget_indices, tuning_half, curve=curve)
    shares = depleted_shares(train_labels, forget_indices)                      # s_c [C]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from unlearn_cli.cost import Work, WorkMeter, retrain_units
from unlearn_cli.engine import FastPath, LoopSettings, predict, seed_everything, train_classifier
from unlearn_cli.errors import UserError
from unlearn_cli.seeding import derive_seed

FRACTIONS: tuple[float, ...] = (0.25,)  # shares of every class's training examples the subsampled fits train on
REPEATS = 1  # fits per fraction (each its own subsample, initialization and batch order)
EPOCH_SHARE = 1.0  # the fits train this share of the recipe's epochs
RECIPE_DEFAULTS = {"epochs": 30, "lr": 0.1, "batch_size": 128, "momentum": 0.9, "weight_decay": 0.0}


# --- the arithmetic -------------------------------------------------------------------------------------------------

def depleted_shares(train_labels: torch.Tensor, forget_indices: torch.Tensor,
                    num_classes: int | None = None) -> torch.Tensor:
    """s_c, float64 [C]: the share of class c's training examples the forget set removes (0 for an empty class)."""
    num_classes = num_classes or int(train_labels.max()) + 1
    totals = torch.bincount(train_labels, minlength=num_classes).double()
    removed = torch.bincount(train_labels[forget_indices], minlength=num_classes).double()
    return torch.where(totals > 0, removed / totals.clamp(min=1), torch.zeros_like(totals))


def smoothed_error(correct: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Per-class error in %, float64: 100 · (wrong + ½) / (n + 1), the posterior mean under Jeffreys's prior."""
    correct, total = correct.double(), total.double()
    return 100.0 * (total - correct + 0.5) / (total + 1.0)


def size_exponents(parent_error: torch.Tensor, fit_errors: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """b_c, float64 [C]: the slope of −log error against log size through the parent's point (size 1), least squares
    over the fits, at least 0. `parent_error` [C], `fit_errors` [fits, C] (smoothed, %), `fractions` one per fit."""
    if len(fractions) != len(fit_errors) or not len(fractions):
        raise UserError("depletion: give one fraction per fit, and at least one fit")
    if any(not 0 < f < 1 for f in fractions):
        raise UserError(f"depletion: fractions {list(fractions)} must lie in (0, 1): the parent is the fit at 1")
    logs = torch.tensor([math.log(f) for f in fractions], dtype=torch.float64)[:, None]  # [fits, 1]
    rises = torch.log(fit_errors.double() / parent_error.double())  # log(e(f) / e(1)) = −b log f
    return (-(logs * rises).sum(0) / (logs ** 2).sum()).clamp(min=0.0)


def size_drops(parent_error: torch.Tensor, shares: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Δ̂_c(size), points [C]: e_c(1) · ((1 − s_c)^(−b_c) − 1), the error capped at 100 % (s_c = 1: 100 − e_c)."""
    parent_error = parent_error.double()
    kept = (1.0 - shares.double()).clamp(min=0.0)
    grown = torch.where(kept > 0, parent_error * kept.clamp(min=1e-300) ** -exponents.double(),
                        torch.full_like(parent_error, 100.0))
    return grown.clamp(max=100.0) - parent_error


def shifted_logits(logits: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """The logits with class c's prior scaled by (1 − s_c): z + log(1 − s), −inf for a class removed whole."""
    return logits.double() + torch.log((1.0 - shares.double()).clamp(min=0.0))


def per_class_correct(logits: torch.Tensor, labels: torch.Tensor,
                      num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [C], total [C]) int64 counts of a model's predictions."""
    hits = logits.argmax(1) == labels
    return (torch.bincount(labels[hits], minlength=num_classes), torch.bincount(labels, minlength=num_classes))


def prior_drops(logits: torch.Tensor, labels: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """Δ̂_c(prior), points [C]: acc_c of `logits` less acc_c of the same logits with the priors shifted."""
    num_classes = logits.shape[1]
    before, total = per_class_correct(logits, labels, num_classes)
    after, _ = per_class_correct(shifted_logits(logits, shares), labels, num_classes)
    return 100.0 * (before - after).double() / total.double().clamp(min=1)


def class_mix(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c, float64 [C]: the share of `labels` in class c."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return counts / counts.sum().clamp(min=1)


def expected_reference_accuracy(reference_logits: torch.Tensor, reference_labels: torch.Tensor,
                                forget_labels: torch.Tensor, drops: torch.Tensor) -> float:
    """Σ_c w_c (acc_c(R) − Δ̂_c), %: what a retrained model's acc(F) should be, read off a model's accuracy on
    the reference R per class, each class weighted by F's class mix w (a class of F that R lacks is left out and
    the weights of the others renormalized). The target that forget_gap compares acc(F) against."""
    num_classes = len(drops)
    correct, total = per_class_correct(reference_logits, reference_labels, num_classes)
    weights = class_mix(forget_labels, num_classes) * (total > 0)
    if float(weights.sum()) == 0:
        return float("nan")
    accuracy = 100.0 * correct.double() / total.double().clamp(min=1)
    return float((weights * (accuracy - drops.double())).sum() / weights.sum())


# --- the estimate ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """One subsampled fit: its fraction, seed, epochs and size, its per-class correct counts and its work."""

    fraction: float
    seed: int
    epochs: int
    size: int
    correct: torch.Tensor  # int64 [C], on the test positions
    work: Work  # its training and its test pass


@dataclass(frozen=True)
class Curve:
    """The parent's learning curve: its own logits on the test positions and the subsampled fits. It does not
    depend on a forget set."""

    logits: torch.Tensor  # float32 [T, C], the parent's
    labels: torch.Tensor  # int64 [T]
    fits: tuple[Fit, ...]
    work: Work  # everything `learning_curve` ran

    @property
    def total(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.logits.shape[1])

    @property
    def parent_correct(self) -> torch.Tensor:
        return per_class_correct(self.logits, self.labels, self.logits.shape[1])[0]

    def exponents(self, fits: Sequence[Fit] | None = None) -> torch.Tensor:
        """b_c [C] from `fits` (all by default)."""
        fits = self.fits if fits is None else fits
        errors = torch.stack([smoothed_error(fit.correct, self.total) for fit in fits])
        return size_exponents(smoothed_error(self.parent_correct, self.total), errors, [fit.fraction for fit in fits])


@dataclass(frozen=True)
class Depletion:
    """The estimate for one forget set: its shares s_c, the curve it read, the drops Δ̂_c and what it cost."""

    shares: torch.Tensor  # s_c, float64 [C]
    curve: Curve
    work: Work  # what this estimate ran (the curve's work when it made the curve, else the prior's pass only)
    retrain_units: int | None  # the work of retraining on the retain set with the parent's recipe

    @property
    def parent_accuracy(self) -> torch.Tensor:
        """The parent's accuracy per class, % (float64 [C])."""
        return 100.0 * self.curve.parent_correct.double() / self.curve.total.double().clamp(min=1)

    @property
    def prior_drops(self) -> torch.Tensor:
        return prior_drops(self.curve.logits, self.curve.labels, self.shares)

    @property
    def size_drops(self) -> torch.Tensor:
        parent_error = smoothed_error(self.curve.parent_correct, self.curve.total)
        return size_drops(parent_error, self.shares, self.curve.exponents())

    @property
    def drops(self) -> torch.Tensor:
        """Δ̂_c, points (float64 [C]): the retrained model's expected accuracy loss on unseen examples of class c."""
        return torch.minimum(self.prior_drops + self.size_drops, self.parent_accuracy)

    def forget_drop(self, forget_labels: torch.Tensor) -> float:
        """Σ_c w_c Δ̂_c, points: the drop weighted by F's class mix."""
        return float((class_mix(forget_labels, len(self.shares)) * self.drops).sum())

    def expected_accuracy(self, forget_labels: torch.Tensor) -> float:
        """The retrained model's expected acc(F), %: Σ_c w_c (parent's acc_c − Δ̂_c) on the test positions."""
        weights = class_mix(forget_labels, len(self.shares))
        return float((weights * (self.parent_accuracy - self.drops)).sum())

    @property
    def cost_x_retrain(self) -> float | None:
        """The estimate's work over retraining's (None when the parent's recipe does not say its epochs)."""
        return None if not self.retrain_units else self.work.units / self.retrain_units


# --- the fits -------------------------------------------------------------------------------------------------------

def subsample(train_labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted training indices: per class, round(fraction · its count) of its examples (at least one), drawn seeded;
    a smaller fraction takes the first of the same draw."""
    if not 0 < fraction <= 1:
        raise UserError(f"depletion: fraction {fraction!r} must lie in (0, 1]")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(int(train_labels.max()) + 1):
        members = torch.nonzero(train_labels == label).flatten()
        if len(members):
            order = members[torch.randperm(len(members), generator=generator)]
            chosen.append(order[:max(1, round(fraction * len(members)))])
    return torch.cat(chosen).sort().values


def recipe_settings(recipe: dict, epoch_share: float = 1.0) -> tuple[LoopSettings, int]:
    """(loop settings, batch size) of a `train` configuration, the defaults of `train` where it is silent, with
    `epoch_share` of its epochs (at least one)."""
    values = {key: type(default)(recipe[key]) if recipe.get(key) is not None else default
              for key, default in RECIPE_DEFAULTS.items()}
    settings = LoopSettings(epochs=max(1, round(epoch_share * values["epochs"])), lr=values["lr"],
                            momentum=values["momentum"], weight_decay=values["weight_decay"],
                            max_steps=recipe.get("max_steps"))
    return settings, values["batch_size"]


def fit_correct(parent, data, indices: torch.Tensor, test_positions: torch.Tensor, settings: LoopSettings,
                batch_size: int, seed: int, device: torch.device, fast: FastPath | None = None) -> torch.Tensor:
    """int64 [C]: the per-class correct counts on `test_positions` of the parent's architecture trained from scratch
    (initialization and batch order seeded with `seed`) on the training examples `indices`."""
    seed_everything(seed)
    model = parent.new_model().to(device)
    train_classifier(model, data, indices, dataclasses.replace(settings), batch_size, seed, device, fast=fast)
    logits, labels = predict(model, data.batches("test", test_positions, 512, device=device))
    return per_class_correct(logits, labels, parent.num_classes)[0]


def learning_curve(parent, data, test_positions: torch.Tensor, fractions: Sequence[float] = FRACTIONS,
                   repeats: int = REPEATS, epoch_share: float = EPOCH_SHARE, seed: int = 0,
                   device: torch.device | str = "cpu", fast: FastPath | None = None) -> Curve:
    """The parent's logits on `test_positions` and `repeats` subsampled fits per fraction (fit k: seed
    `derive_seed(seed, k)`, i.e. `seed + k` below 2⁶³, for its subsample, initialization and batch order), all counted."""
    device = torch.device(device)
    test_positions = torch.as_tensor(test_positions, dtype=torch.long)
    settings, batch_size = recipe_settings(parent.config, epoch_share)
    fits = []
    with WorkMeter() as total:
        logits, labels = predict(parent.model.to(device), data.batches("test", test_positions, 512, device=device))
        for fraction in fractions:
            for repeat in range(repeats):
                fit_seed = derive_seed(seed, repeat)
                indices = subsample(data.train_labels, fraction, fit_seed)
                with WorkMeter() as meter:
                    correct = fit_correct(parent, data, indices, test_positions, settings, batch_size, fit_seed,
                                          device, fast)
                fits.append(Fit(fraction, fit_seed, settings.epochs, len(indices), correct, meter.work))
    return Curve(logits, labels, tuple(fits), total.work)


def class_drops(parent, data, forget_indices: torch.Tensor, test_positions: torch.Tensor, curve: Curve | None = None,
                **options) -> Depletion:
    """Estimate Δ_c for every class c (see the module): `parent` a `Checkpoint` (its architecture via `new_model`,
    its recipe via `config`), `data` the `ImageData` it was trained on, `test_positions` the test examples to
    measure on (the tuning half: `halve_test_set(data.test_labels, seed)[0]`). Without a `curve`, one is made with
    `options` (`learning_curve`'s) and its work is the estimate's; a given `curve` (of the same parent and test
    positions) costs nothing more."""
    forget_indices = torch.as_tensor(forget_indices, dtype=torch.long).unique()
    if curve is None:
        curve = learning_curve(parent, data, test_positions, **options)
        work = curve.work
    else:
        work = Work()
    retain_size = data.num_train - len(forget_indices)
    return Depletion(depleted_shares(data.train_labels, forget_indices, parent.num_classes), curve, work,
                     retrain_units(parent.config, retain_size))


def expected_forget_accuracy(parent, data, forget_indices: torch.Tensor, test_positions: torch.Tensor,
                             **options) -> tuple[float, Depletion]:
    """(the retrained model's expected acc(F) in %, the estimate): `class_drops` with `options`, read off with F's
    class mix. To plug into forget_gap, see the module: |acc(F) − (acc(R) − estimate.forget_drop(F's labels))|."""
    estimate = class_drops(parent, data, forget_indices, test_positions, **options)
    forget_labels = data.train_labels[torch.as_tensor(forget_indices, dtype=torch.long)]
    return estimate.expected_accuracy(forget_labels), estimate
