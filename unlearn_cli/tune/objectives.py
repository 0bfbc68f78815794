"""What a candidate is scored by: pure functions of logits (lower is better).

Oracle-free (the default; a user who unlearns to avoid retraining has no oracle). On the candidate model,
with R the reference part of the test set (tune/reference.py) and V its validation part, in points (%):

    forget_gap       |acc(F) − acc(R)|                 the forget set should look as unseen as R; when F
                                                       depletes classes, |acc(F) − Σ_c w_c (acc_c(R) − Δ̂_c)|
                                                       with acc_c(R) the original's, w F's class mix and Δ̂_c
                                                       what a retrained model loses on class c
                                                       (tune/depletion.py)
    distribution     100 · KS(p_y on F, p_y on R)      two-sample Kolmogorov–Smirnov statistic of the
                                                       true-class probabilities: sup_x |F_F(x) − F_R(x)|
    validation_drop  max(0, acc_V(original) − acc_V)   test accuracy must not be lost
    damage           max(0, acc_R(original) − acc_R − allowance)
                                                       forgetting by damage: a model that got worse on
                                                       everything also has acc(F) ≈ acc(R)
    retain_fit       max(0, acc_S(original) − acc_S − allowance) + 100 · KS(φ on S, original's φ on S)
                                                       S a seeded sample of the retain set: a retrained model
                                                       still fits what it was trained on
    confidence       100 · KS(φ on V′, original's φ on V′)
                                                       V′ the examples of V of the classes F does not deplete
                                                       (methods/calibration.py): on unseen examples a
                                                       retrained model is about as confident as the original

φ = z_y − logsumexp_{j≠y} z_j is the logit-scaled confidence that the challenge's ε, the likelihood-ratio attack
and KL read (evaluate/epsilon.py); a model under-confident everywhere is told from retrained ones on any example.
Every part is in points of a percentage: accuracies in %, distribution distances as 100 · KS (the largest gap
between two empirical distribution functions, in % of the examples), so their weights compare like with like.

    objective = Σ weight · part (every weight 1 but retain_fit's and confidence's, 0; the allowance 5 points)

retain_fit and confidence are computed and shown, not weighted, by default. Both compare the candidate with the
original, and a model retrained without F is not the original: on the Fashion-MNIST suite's validation forget sets
the validation oracles scored 18.8 and 13.0 (IID) on them, as much as the untouched original's whole advantage on
the other parts, so at weight 1 they ranked the oracle level with the original and chose the gentlest setting of
every grid (selection regret 7.7 points of average gap; 4.9 at weight 0.25; 1.2 at 0, with three validation sets
and the depletion target: examples/fashion-mnist/results/v4/objectives.md). Confidence is restored instead by the
calibration step (`--grid calibrate=false,true`); `--weight retain_fit=…` puts them back.

For a forget set that carries a manipulation (mislabeled or poisoned examples, seen with the labels and patches
the model was trained on), the oracle's F is unseen data *manipulated the same way*: R is manipulated by the same
rule (relabelled, or stamped with the trigger and given the target label) for forget_gap and distribution, and
damage is measured on R as it is (clean). That alone cannot see a backdoor that still works everywhere (F and
the stamped R then agree), so a poison adds one part: the oracle never learned the trigger, so stamping it on
unseen images changes little of what it predicts:

    trigger          max(0, 100·(share of R′ put in the target class with the trigger stamped
                                 − share of R′ put there as it is))
                     R′: the examples of R not of the target class (Goel et al. 2024's attack success
                     rate, less its floor on clean images)

With an oracle (research mode, as the DEL paper tunes): the average gap to the oracle over forget accuracy,
test accuracy and MIA-correctness (evaluate/metrics.py), on a validation forget set.

Usage:
    score = oracle_free_score(candidate, original, OracleFreeWeights())   # {"objective": …, parts…}
    score = oracle_score(candidate_metrics, oracle_metrics)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from unlearn_cli.evaluate.epsilon import logit_scaled_confidence
from unlearn_cli.evaluate.memorization import label_probability
from unlearn_cli.names import ORACLE_FREE_PARTS
from unlearn_cli.evaluate.metrics import AVERAGE_GAP_METRICS, accuracy_percent, oracle_gaps
from unlearn_cli.tune.depletion import expected_reference_accuracy


@dataclass(frozen=True)
class Outputs:
    """A model's logits [N, C] and labels [N] on the forget set and on the reference and validation parts."""

    forget_logits: torch.Tensor
    forget_labels: torch.Tensor
    reference_logits: torch.Tensor
    reference_labels: torch.Tensor
    validation_logits: torch.Tensor
    validation_labels: torch.Tensor
    clean_reference_logits: torch.Tensor | None = None  # a manipulated forget set: R as it is, for `damage`
    clean_reference_labels: torch.Tensor | None = None
    trigger_target: int | None = None  # a poison: R is R′ stamped and labelled with this class (`trigger`)
    retain_logits: torch.Tensor | None = None  # S, a seeded retain sample (`retain_fit`); None: not scored
    retain_labels: torch.Tensor | None = None
    confidence_logits: torch.Tensor | None = None  # V′, V of the classes F does not deplete (`confidence`)
    confidence_labels: torch.Tensor | None = None
    forget_drops: torch.Tensor | None = None  # Δ̂_c [C] of a depleting F (tune/depletion.py); None: acc(R) is the target

    def clean_reference_accuracy(self) -> float:
        if self.clean_reference_logits is None:
            return accuracy_percent(self.reference_logits, self.reference_labels)
        return accuracy_percent(self.clean_reference_logits, self.clean_reference_labels)


@dataclass(frozen=True)
class OracleFreeWeights:
    forget_gap: float = 1.0
    distribution: float = 1.0
    validation_drop: float = 1.0
    damage: float = 1.0
    trigger: float = 1.0  # a poison only
    retain_fit: float = 0.0  # shown, not weighted, by default: see the module
    confidence: float = 0.0
    damage_allowance: float = 5.0  # points of accuracy a candidate may lose before `damage` / `retain_fit` count

    PARTS = ORACLE_FREE_PARTS

    def replace(self, changes: dict) -> "OracleFreeWeights":
        return dataclasses.replace(self, **changes)


def ks_distance(first: torch.Tensor, second: torch.Tensor) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two empirical distribution functions."""
    if len(first) == 0 or len(second) == 0:
        return math.nan
    first, second = first.double().sort().values, second.double().sort().values
    points = torch.cat([first, second])
    cdf_first = torch.searchsorted(first, points, right=True).double() / len(first)
    cdf_second = torch.searchsorted(second, points, right=True).double() / len(second)
    return float((cdf_first - cdf_second).abs().max())


def depleted_target(candidate: Outputs, original: Outputs) -> float:
    """What a model retrained without a depleting F scores on F, %: the original's accuracy on R per class, weighted by
    F's class mix, less the expected loss Δ̂_c on each class (tune/depletion.py). The original's R, not the
    candidate's: a candidate that is itself like a retrained model has already lost Δ on R, and would be asked to
    lose it twice."""
    return expected_reference_accuracy(original.reference_logits, original.reference_labels, candidate.forget_labels,
                                       candidate.forget_drops)


def oracle_free_score(candidate: Outputs, original: Outputs, weights: OracleFreeWeights = OracleFreeWeights()) -> dict:
    """The oracle-free objective and its parts (points); NaN-free inputs give a finite objective."""
    forget = accuracy_percent(candidate.forget_logits, candidate.forget_labels)
    reference = accuracy_percent(candidate.reference_logits, candidate.reference_labels)
    validation = accuracy_percent(candidate.validation_logits, candidate.validation_labels)
    clean_reference = candidate.clean_reference_accuracy()
    original_reference = original.clean_reference_accuracy()
    original_validation = accuracy_percent(original.validation_logits, original.validation_labels)
    target = reference if candidate.forget_drops is None else depleted_target(candidate, original)
    parts = {
        "forget_gap": abs(forget - target),
        "distribution": 100.0 * ks_distance(label_probability(candidate.forget_logits, candidate.forget_labels),
                                            label_probability(candidate.reference_logits,
                                                                   candidate.reference_labels)),
        "validation_drop": max(0.0, original_validation - validation),
        "damage": max(0.0, original_reference - clean_reference - weights.damage_allowance),
    }
    if candidate.trigger_target is not None:
        target = candidate.trigger_target
        others = candidate.clean_reference_labels != target  # R′, the examples the stamped R holds
        floor = accuracy_percent(candidate.clean_reference_logits[others], torch.full_like(
            candidate.clean_reference_labels[others], target))
        parts["trigger"] = max(0.0, reference - floor)  # R is R′ stamped, labelled with the target
    if candidate.retain_logits is not None:
        parts["retain_fit"] = max(0.0, accuracy_percent(original.retain_logits, original.retain_labels)
                                  - accuracy_percent(candidate.retain_logits, candidate.retain_labels)
                                  - weights.damage_allowance) + 100.0 * ks_distance(
            logit_scaled_confidence(candidate.retain_logits, candidate.retain_labels),
            logit_scaled_confidence(original.retain_logits, original.retain_labels))
    if candidate.confidence_logits is not None:
        parts["confidence"] = 100.0 * ks_distance(
            logit_scaled_confidence(candidate.confidence_logits, candidate.confidence_labels),
            logit_scaled_confidence(original.confidence_logits, original.confidence_labels))
    objective = sum(getattr(weights, name) * parts[name] for name in OracleFreeWeights.PARTS if name in parts)
    targeted = {} if candidate.forget_drops is None else {"forget_target": target}
    return {"objective": objective, **parts, "forget_accuracy": forget, "reference_accuracy": reference,
            **targeted, "validation_accuracy": validation}


def oracle_score(metrics: dict[str, float], oracle_metrics: dict[str, float]) -> dict:
    """The average gap to the oracle (forget accuracy, test accuracy, MIA-correctness) and each gap."""
    comparison = oracle_gaps(metrics, oracle_metrics)
    return {"objective": comparison["average_gap"],
            **{f"{key}_gap": comparison["gaps"][key] for key in AVERAGE_GAP_METRICS},
            "forget_accuracy": metrics["forget_accuracy"], "test_accuracy": metrics["test_accuracy"]}


_OUTPUT_GROUPS = (("forget_logits", "forget_labels"), ("reference_logits", "reference_labels"),
                  ("validation_logits", "validation_labels"), ("clean_reference_logits", "clean_reference_labels"),
                  ("retain_logits", "retain_labels"), ("confidence_logits", "confidence_labels"))


def objective_standard_error(candidate: Outputs, original: Outputs, weights: OracleFreeWeights = OracleFreeWeights(),
                             draws: int = 100, seed: int = 0) -> float:
    """Bootstrap standard error of the oracle-free objective (Efron & Tibshirani 1993, ch. 6): the examples of F, R
    and V resampled with replacement, the same draws on the candidate and the original (they saw the same examples),
    the objective recomputed; the standard deviation over `draws` resamples."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(draws):
        picks = {}
        for logits_name, _ in _OUTPUT_GROUPS:
            logits = getattr(candidate, logits_name)
            if logits is not None:
                picks[logits_name] = torch.randint(len(logits), (len(logits),), generator=generator)

        def resampled(outputs: Outputs) -> Outputs:
            changes = {}
            for logits_name, labels_name in _OUTPUT_GROUPS:
                if logits_name in picks and getattr(outputs, logits_name) is not None:
                    changes[logits_name] = getattr(outputs, logits_name)[picks[logits_name]]
                    changes[labels_name] = getattr(outputs, labels_name)[picks[logits_name]]
            return dataclasses.replace(outputs, **changes)

        values.append(oracle_free_score(resampled(candidate), resampled(original), weights)["objective"])
    return float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else math.nan
