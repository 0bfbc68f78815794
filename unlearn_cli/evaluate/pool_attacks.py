"""Per-example distinguishers of two pools of models: a likelihood-ratio attack and KL divergences of φ.

Both take the logit-scaled confidences φ of every model of each pool on every example ([N, E] arrays) and
answer, example by example, how well one can tell a model of one pool from a model of the other.

- The attack is the offline, per-example Gaussian likelihood-ratio test of LiRA (Carlini et al. 2022,
  "Membership inference attacks from first principles") as U-LiRA uses it to tell unlearned from retrained
  models (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a false sense of
  privacy"): fit a Gaussian to φ under each pool, leaving out the models under attack (one of each pool),
  and call a model unlearned when its φ is likelier under the unlearned pool's Gaussian. 50% balanced accuracy (AUC
  0.5) means the pools cannot be told apart.
- KL of margins (Georgiev et al. 2024, "Attribute-to-delete: machine unlearning via datamodel matching"):
  KL(retrained ‖ unlearned) between the pools' φ distributions, in closed form for the fitted Gaussians and
  estimated from shared-bin histograms (fewer bins than the 20 of large-pool benchmarks: pools here may be
  a few dozen models).

- The normalized attack runs the same test on φ standardized per model: each model's φ minus its mean, over
  its standard deviation, on reference examples no model of either pool trained on (the test set). A model
  that only changed its temperature (its logits scaled by a constant) changes its φ scale, which the plain
  attack can see on every example; standardized, that change is gone, and what is left is the example's
  place among the model's own outputs.

Usage:
    attack = likelihood_ratio_attack(unlearned_phi, retrained_phi)   # {"accuracy": [E], "auc": [E]}
    normalized = likelihood_ratio_attack(standardize(unlearned_phi, unlearned_test_phi),
                                         standardize(retrained_phi, retrained_test_phi))
    kl = gaussian_kl(retrained_phi, unlearned_phi), binned_kl(retrained_phi, unlearned_phi)   # [E] each
"""

from __future__ import annotations

import numpy as np

VARIANCE_FLOOR = 1e-6  # relative to the example's φ variance over both pools; keeps a constant pool finite
TIE_TOLERANCE = 1e-9  # log-likelihood ratios this close to 0 are ties (rounding of equal fits), worth ½
KL_MAX_BINS = 20  # equal-width bins over the range both pools span: ⌈√N⌉ for the smaller pool's N, at most this
KL_PSEUDOCOUNT = 0.5  # added to every bin's count (Krichevsky–Trofimov), so an empty bin costs a bounded amount


def _floor(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """The smallest variance a fit may take, per example: a millionth of the pooled variance (or 1e-12). [E]"""
    return VARIANCE_FLOOR * np.concatenate([unlearned, retrained]).var(axis=0) + 1e-12


def _fit(values: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance (at least `floor`) over the models of [N, E]. -> ([E], [E])"""
    variance = values.var(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return values.mean(axis=0), np.maximum(variance, floor)


def _leave_one_out(values: np.ndarray, floor: np.ndarray, copies: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance of the pool without each of its models in turn. -> ([N, E], [N, E])

    Computed around the full mean: with d = x − x̄, leaving out model m gives mean x̄ − d_m / (n − 1) and sum of
    squares Σd² − d_m² − (n − 1)(d_m / (n − 1))², over n − 2 degrees of freedom (0 when one model is left).
    With `copies` ([N], how many rows hold the same model as row m, as in a bootstrap draw) all k copies
    leave together: mean x̄ − k d_m / (n − k), sum of squares Σd² − k d_m² − (n − k)(k d_m / (n − k))², over
    n − k − 1 degrees of freedom.
    """
    count = len(values)
    copies = np.ones(count) if copies is None else np.asarray(copies, dtype=np.float64)
    copies = copies[:, None] if copies.ndim == 1 else copies  # [N, 1] or [N, E]
    copies = np.where(copies >= count, 0.0, copies)  # a pool of one model's copies: its fit is that model
    center = values.mean(axis=0)
    deviation = values - center
    remaining = count - copies  # [N, 1]
    shift = copies * deviation / np.maximum(remaining, 1)
    squares = (deviation**2).sum(axis=0) - copies * deviation**2 - remaining * shift**2
    freedom = remaining - 1
    variance = np.where(freedom > 0, squares / np.maximum(freedom, 1), 0.0)
    return center - shift, np.maximum(variance, floor)


def _log_density(x: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * variance) + (x - mean) ** 2 / variance)


def likelihood_ratio_attack(unlearned: np.ndarray, retrained: np.ndarray, chunk_elements: int = 4_000_000,
                            copies: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Balanced accuracy and AUC per example of the leave-one-model-out Gaussian likelihood-ratio attack.

    For every pair of an unlearned model m and a retrained model j, both Gaussians are fitted without them
    (m out of the unlearned pool, j out of the retrained pool), and both models are scored by these two fits:
    ratio = log p(φ | unlearned fit) − log p(φ | retrained fit), called unlearned when positive. Under pools of
    one distribution the two held-out models are exchangeable given the fits, so the accuracy and the AUC are
    ½ exactly in expectation; averaging over all pairs makes the result independent of the models' order.
    (Leaving a model out of its own pool only would score it against a fit of N − 1 models and the other
    pool's fit of N, which favours the other pool.)

    Args:
        unlearned: [N_u, E] φ of each unlearned model (N_u ≥ 2).
        retrained: [N_r, E] φ of each retrained model (N_r ≥ 2).
        chunk_elements: bound on the pair-by-example arrays built at once (memory).
        copies: for pools drawn with replacement, ([N_u] or [N_u, E], [N_r] or [N_r, E]) how many rows of each
            pool hold the same model as each row; a held-out model leaves its pool's fit with all its copies.

    Returns:
        "accuracy": [E] mean over pairs of the attack's accuracy on the unlearned and on the retrained model
            (0.5: chance; ratios within TIE_TOLERANCE of 0 count ½);
        "auc": [E] share of pairs in which the unlearned model gets the higher ratio (ties ½).
    """
    unlearned, retrained = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    floor = _floor(unlearned, retrained)
    copies_unlearned, copies_retrained = copies if copies is not None else (None, None)
    unlearned_mean, unlearned_variance = _leave_one_out(unlearned, floor, copies_unlearned)  # [N_u, E]: without m
    retrained_mean, retrained_variance = _leave_one_out(retrained, floor, copies_retrained)  # [N_r, E]: without j
    own_unlearned = _log_density(unlearned, unlearned_mean, unlearned_variance)  # [N_u, E]
    own_retrained = _log_density(retrained, retrained_mean, retrained_variance)  # [N_r, E]
    examples = unlearned.shape[1]
    accuracy, auc = np.empty(examples), np.empty(examples)
    step = max(1, chunk_elements // (len(unlearned) * len(retrained)))
    for begin in range(0, examples, step):
        part = slice(begin, min(examples, begin + step))
        # [N_u, N_r, E'] for pair (m, j): each held-out model scored by the other pool's fit without the other
        ratio_unlearned = (own_unlearned[:, None, part]
                           - _log_density(unlearned[:, None, part], retrained_mean[None, :, part],
                                          retrained_variance[None, :, part]))
        ratio_retrained = (_log_density(retrained[None, :, part], unlearned_mean[:, None, part],
                                        unlearned_variance[:, None, part]) - own_retrained[None, :, part])
        ratio_unlearned = np.where(np.abs(ratio_unlearned) < TIE_TOLERANCE, 0.0, ratio_unlearned)
        ratio_retrained = np.where(np.abs(ratio_retrained) < TIE_TOLERANCE, 0.0, ratio_retrained)
        called_unlearned = (ratio_unlearned > 0) + 0.5 * (ratio_unlearned == 0)
        called_retrained = (ratio_retrained < 0) + 0.5 * (ratio_retrained == 0)
        accuracy[part] = 0.5 * (called_unlearned.mean(axis=(0, 1)) + called_retrained.mean(axis=(0, 1)))
        difference = ratio_unlearned - ratio_retrained
        difference = np.where(np.abs(difference) < TIE_TOLERANCE, 0.0, difference)
        auc[part] = ((difference > 0) + 0.5 * (difference == 0)).mean(axis=(0, 1))
    return {"accuracy": accuracy, "auc": auc}


def standardize(phi: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """φ of each model minus its mean over `reference`, divided by its standard deviation there. -> [N, E]

    Args:
        phi: [N, E] φ of each model on the examples to attack.
        reference: [N, R] φ of the same models on examples none of them trained on (R ≥ 2).

    With two classes φ = z_y − z_other is linear in the logits, so multiplying a model's logits by any
    t > 0 leaves its standardized φ unchanged; with more classes it is the leading (large-margin) behaviour.
    """
    phi, reference = np.asarray(phi, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    center = reference.mean(axis=1, keepdims=True)
    scale = reference.std(axis=1, keepdims=True)
    return (phi - center) / np.where(scale > 0, scale, 1.0)


def gaussian_kl(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """KL(N(μ_ref, σ²_ref) ‖ N(μ_other, σ²_other)) of Gaussians fitted per example to [N_ref, E] and [N_o, E]. [E]

    = log(σ_other / σ_ref) + (σ²_ref + (μ_ref − μ_other)²) / (2σ²_other) − ½.
    """
    reference, other = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    floor = _floor(reference, other)
    (mean_ref, var_ref), (mean_other, var_other) = _fit(reference, floor), _fit(other, floor)
    return 0.5 * (np.log(var_other / var_ref) + (var_ref + (mean_ref - mean_other) ** 2) / var_other - 1)


def kl_bins(num_models: int) -> int:
    """Bins of the binned KL for pools of (at least) `num_models`: ⌈√N⌉ (the square-root rule), 2 to 20."""
    return int(min(KL_MAX_BINS, max(2, np.ceil(np.sqrt(num_models)))))


def binned_kl(reference: np.ndarray, other: np.ndarray, bins: int | None = None) -> np.ndarray:
    """KL(reference ‖ other) per example from histograms over the range both samples span. [E]

    `bins` equal-width bins (default `kl_bins` of the smaller pool); each bin's count gets KL_PSEUDOCOUNT
    before the counts become shares, so the estimate stays finite and is not dominated by bins a small sample
    happened to leave empty. Samples that are all equal give 0.
    """
    reference, other = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    bins = kl_bins(min(len(reference), len(other))) if bins is None else bins
    low = np.minimum(reference.min(axis=0), other.min(axis=0))
    span = np.maximum(reference.max(axis=0), other.max(axis=0)) - low
    scale = np.where(span > 0, span, 1.0)

    def shares(values: np.ndarray) -> np.ndarray:  # [E, bins]
        index = np.clip(np.floor((values - low) / scale * bins), 0, bins - 1).astype(np.int64)  # [N, E]
        counts = np.zeros((values.shape[1], bins))
        np.add.at(counts, (np.broadcast_to(np.arange(values.shape[1]), index.shape), index), 1.0)
        counts += KL_PSEUDOCOUNT
        return counts / counts.sum(axis=1, keepdims=True)

    p, q = shares(reference), shares(other)
    return np.where(span > 0, (p * np.log(p / q)).sum(axis=1), 0.0)
