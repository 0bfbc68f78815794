"""Pool metrics of `unlearn audit`: φ, the challenge's ε and its points, the likelihood-ratio attack, KL."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearn_cli.evaluate.audit import (bootstrap, compare_pools, excess, halves, headline, normalized_score, percentile_interval,
                                        summarize)
from unlearn_cli.evaluate.epsilon import (DELTA, EPSILON_CAP, bucket_table, epsilon_points, epsilon_resolution,
                                          epsilons, final_score, forget_score, logit_scaled_confidence)
from unlearn_cli.evaluate.pool_attacks import (_leave_one_out, binned_kl, gaussian_kl, likelihood_ratio_attack,
                                               standardize)

FIXTURE = Path(__file__).parent / "fixtures" / "audit" / "challenge_reference.json"


# --- φ = log p_y − log(1 − p_y) ---------------------------------------------------------------------------

def test_phi_by_hand():
    # logits (2, 1, 0), y = 0: p = e²/(e² + e + 1) = 0.6652410; φ = ln(0.6652410/0.3347590) = 0.6867383
    #                           = 2 − ln(e + 1) = 2 − 1.3132617
    # y = 2: 0 − ln(e² + e) = −ln(10.1073379) = −2.3132617
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    phi = logit_scaled_confidence(logits, torch.tensor([0, 2]))
    assert phi.dtype == torch.float64
    assert phi.tolist() == pytest.approx([0.6867383, -2.3132617], abs=1e-7)
    p = torch.softmax(logits.double(), dim=1)[0, 0]
    assert float(phi[0]) == pytest.approx(float(torch.log(p) - torch.log1p(-p)), abs=1e-12)


def test_phi_is_finite_at_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    phi = logit_scaled_confidence(logits, torch.tensor([0, 1, 1]))
    # y = 0: 1e4 − ln(e^−1e4 + e^0) = 1e4; y = 1: −1e4 − 1e4 = −2e4; last: 1e4 − 1e4 = 0
    assert phi.tolist() == [1e4, -2e4, 0.0]


# --- ε of tiny constructed pools -------------------------------------------------------------------------

def test_identical_pools_score_zero_epsilon_and_a_full_point():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(8, 5))
    assert epsilons(pool, pool.copy()).tolist() == [0.0] * 5
    assert epsilons(np.ones((4, 3)), np.ones((4, 3))).tolist() == [0.0] * 3  # constant and equal: no rule survives
    assert forget_score(pool, pool.copy()) == 1.0


def test_separated_pools_score_the_cap_and_no_points():
    rng = np.random.default_rng(1)
    low, high = rng.normal(size=(8, 4)), rng.normal(size=(8, 4)) + 100
    assert epsilons(low, high).tolist() == [EPSILON_CAP] * 4
    assert forget_score(low, high) == 0.0


def test_a_pool_with_under_one_percent_of_the_others_spread_scores_the_cap():
    retrained = np.array([[0.0], [1.0], [2.0], [3.0]])
    unlearned = np.array([[1.5], [1.5], [1.5], [1.509]])  # spread 0.009 < 1% of 3, inside the retrained range
    assert epsilons(unlearned, retrained).tolist() == [EPSILON_CAP]


def test_epsilon_computed_on_paper():
    # unlearned (3.5, 5, 6, 7), retrained (1, 2, 3, 4): the unlearned median is larger, so threshold rules say
    # "unlearned when φ ≥ t". t = 4 gives FPR = ¼ (the retrained 4) and FNR = ¼ (the unlearned 3.5); every
    # other threshold leaves one rate at 0 and is discarded. The interval rules (positive: the retrained pool,
    # spread 3 < 3.5) at best include 2..4, FPR = ¼ and FNR = ¼ again. So
    # ε = log(1 − δ − ¼) − log ¼ = log(3 − 4δ) = 1.0985989, in bucket [1, 1.5): ¼ point with 4 models.
    unlearned = np.array([[3.5], [5.0], [6.0], [7.0]])
    retrained = np.array([[1.0], [2.0], [3.0], [4.0]])
    eps = epsilons(unlearned, retrained)
    assert eps.tolist() == pytest.approx([math.log(3 - 4 * DELTA)], abs=1e-12)
    assert epsilon_points(eps, 4).tolist() == [0.25]


def test_bucket_tables():
    assert bucket_table(8) == [(0.0, 0.5, 1.0), (0.5, 1.0, 0.5), (1.0, 1.5, 0.25), (1.5, 2.0, 0.125)]  # ⌈ln 7⌉ = 2
    table = bucket_table(32)  # ⌈ln 31⌉ = ⌈3.43⌉ = 4
    assert len(table) == 8 and table[-1] == (3.5, 4.0, 1 / 128)
    table = bucket_table(512)  # ⌈ln 511⌉ = ⌈6.24⌉ = 7
    assert len(table) == 14 and table[-1] == (6.5, 7.0, 2.0**-13)
    assert [epsilon_resolution(n) for n in (2, 3, 8, 32, 512)] == [0, 1, 2, 4, 7]
    # bucket edges belong to the higher bucket; at or beyond the resolution, nothing
    assert epsilon_points(np.array([0.0, 0.49, 0.5, 1.99, 2.0, 50.0]), 8).tolist() == [1, 1, 0.5, 0.125, 0, 0]


def test_order_of_models_and_of_the_pools_does_not_matter():
    rng = np.random.default_rng(2)
    unlearned = rng.normal(size=(12, 40)) * rng.uniform(0.3, 2, 40) + rng.uniform(-1, 1, 40)
    retrained = rng.normal(size=(12, 40))
    shuffled_u, shuffled_r = unlearned[rng.permutation(12)], retrained[rng.permutation(12)]
    eps = epsilons(unlearned, retrained)
    assert np.array_equal(epsilons(shuffled_u, shuffled_r), eps)
    assert np.array_equal(epsilons(retrained, unlearned), eps)
    attack = likelihood_ratio_attack(unlearned, retrained)
    for first, second in ((shuffled_u, shuffled_r), (retrained, unlearned)):
        again = likelihood_ratio_attack(first, second)
        np.testing.assert_allclose(again["accuracy"], attack["accuracy"], atol=1e-12)
        np.testing.assert_allclose(again["auc"], attack["auc"], atol=1e-12)


def test_forget_score_agrees_with_the_challenge_reference():
    """The fixture holds φ of 16 + 16 models on 48 examples and the score the challenge's reference code gives
    them (its "command" field reproduces it). The reference scans a grid of 100 thresholds per unit; ε here is
    exact, so it can only be larger where the grid stepped over a gap, and the score must agree within 0.02."""
    fixture = json.loads(FIXTURE.read_text())
    unlearned, retrained = np.array(fixture["unlearned"]), np.array(fixture["retrained"])
    assert unlearned.shape == retrained.shape == (16, 48)
    assert forget_score(unlearned, retrained) == pytest.approx(fixture["forget_score"], abs=0.02)
    eps, reference = epsilons(unlearned, retrained), np.array(fixture["epsilons"])
    assert np.all(eps >= reference - 1e-5)  # a finer search finds every rule the grid found
    assert np.mean(np.abs(eps - reference) < 1e-5) > 0.9


def test_final_score_scales_by_the_accuracy_ratios():
    assert final_score(0.5, (90.0, 100.0), (80.0, 100.0)) == pytest.approx(0.36)
    assert math.isnan(final_score(0.5, (90.0, 0.0), (80.0, 100.0)))


# --- the likelihood-ratio attack ------------------------------------------------------------------------

def test_attack_is_at_chance_on_pools_of_one_distribution():
    # Each pair of held-out models is exchangeable given the fits, so per example the expected accuracy and AUC
    # are exactly ½. The examples are independent: the mean over 3,000 of them is ½ within 4 standard errors
    # (measured from the per-example values; a 4-SE miss has probability 6e-5 for a correct implementation).
    rng = np.random.default_rng(3)
    attack = likelihood_ratio_attack(rng.normal(2, 1, (8, 3000)), rng.normal(2, 1, (8, 3000)))
    for key in ("accuracy", "auc"):
        values = attack[key]
        standard_error = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(values.mean() - 0.5) < 4 * standard_error, (key, values.mean(), standard_error)


def test_attack_separates_separated_pools():
    rng = np.random.default_rng(4)
    attack = likelihood_ratio_attack(rng.normal(0, 1, (8, 50)), rng.normal(8, 1, (8, 50)))
    assert attack["accuracy"].min() == 1.0 and attack["auc"].min() == 1.0


def test_attack_on_identical_pools_is_exactly_chance():
    pool = np.ones((4, 3))
    attack = likelihood_ratio_attack(pool, pool.copy())
    assert attack["accuracy"].tolist() == [0.5] * 3 and attack["auc"].tolist() == [0.5] * 3


# --- KL of margins -----------------------------------------------------------------------------------------

def test_gaussian_kl_closed_form():
    # reference N(0, 1), other N(1, 4): KL = ln 2 + (1 + 1)/(2·4) − ½ = 0.4431472; fitted exactly on samples
    # whose mean and unbiased variance are those numbers
    reference = np.array([[-1.0], [1.0]]) / math.sqrt(2)  # mean 0, unbiased variance 1
    other = 1 + np.array([[-1.0], [1.0]]) * math.sqrt(2)  # mean 1, unbiased variance 4
    assert gaussian_kl(reference, other).tolist() == pytest.approx([math.log(2) + 0.25 - 0.5], abs=1e-12)
    assert gaussian_kl(reference, reference).tolist() == [0.0]


def test_binned_kl_by_hand():
    # range [0, 2] in 2 bins (⌈√4⌉), counts + ½: reference (0, 0, 2, 2) → (2.5, 2.5)/5 = (½, ½);
    # other (0, 2, 2, 2) → (1.5, 3.5)/5 = (0.3, 0.7). KL = ½ ln(0.5/0.3) + ½ ln(0.5/0.7) = 0.0871767
    reference, other = np.array([[0.0], [0.0], [2.0], [2.0]]), np.array([[0.0], [2.0], [2.0], [2.0]])
    assert binned_kl(reference, other).tolist() == pytest.approx([0.0871767], abs=1e-7)
    assert binned_kl(np.ones((3, 2)), np.ones((3, 2))).tolist() == [0.0, 0.0]


# --- the summary ------------------------------------------------------------------------------------------

def test_summary_and_halves():
    rng = np.random.default_rng(5)
    first, second = rng.normal(size=(6, 10)), rng.normal(size=(6, 10)) + 100
    summary = summarize(compare_pools(first, second), 6)
    assert summary["forget_score"] == 0.0 and summary["epsilon"]["share_at_cap"] == 1.0
    assert summary["attack_accuracy"] == 1.0 and summary["resolution"] == 2
    assert halves(["c", "a", "d", "b"]) == ([1, 0], [3, 2])  # a, c | b, d whatever the order given


# --- bootstrap intervals -----------------------------------------------------------------------------------

def test_a_left_out_model_leaves_with_all_its_copies():
    # drawn pool (0, 0, 2): model 0 twice. Without both copies of model 0: (2), mean 2, no variance left (the
    # floor); without model 2: (0, 0), mean 0, variance 0. Without one copy only, the fit would keep the other.
    floor = np.full(1, 1e-6)
    mean, variance = _leave_one_out(np.array([[0.0], [0.0], [2.0]]), floor, np.array([2, 2, 1]))
    assert mean.ravel().tolist() == pytest.approx([2.0, 2.0, 0.0], abs=1e-12)
    assert variance.ravel().tolist() == pytest.approx([1e-6] * 3, abs=1e-15)
    # no copies: the plain leave-one-out, e.g. without the 2: (0, 0); without a 0: (0, 2), mean 1, variance 2
    mean, variance = _leave_one_out(np.array([[0.0], [0.0], [2.0]]), floor)
    assert mean.ravel().tolist() == pytest.approx([1.0, 1.0, 0.0]) and variance.ravel()[0] == pytest.approx(2.0)


def test_percentile_interval_is_shifted_by_the_median_bias_and_clipped():
    replicates = np.arange(101.0)  # median 50; 2.5% and 97.5% quantiles 2.5 and 97.5
    assert percentile_interval(replicates, 50.0) == pytest.approx([2.5, 97.5])
    assert percentile_interval(replicates, 40.0) == pytest.approx([-7.5, 87.5])  # the replicates sit 10 high
    assert percentile_interval(replicates, 40.0, bounds=(0.0, 1e9)) == pytest.approx([0.0, 87.5])
    assert np.isnan(percentile_interval(replicates, float("nan"))).all()


def _pools_with_model_effects(rng, models, examples, shift=0.0):
    """φ [models, examples]: per example a level, per model an offset shared by every example, and noise."""
    level = np.linspace(-2, 4, examples)
    return level + shift + 0.3 * rng.normal(size=(models, 1)) + rng.normal(size=(models, examples))


def test_bootstrap_of_separated_pools_is_certain():
    # every drawn pool of the first kind lies ~100 below every drawn pool of the second: each replicate has ε at
    # the cap on every example (0 points), so the forget score's interval is the point 0. The attack is perfect
    # in most replicates (a draw with few distinct models can fit its own pool so narrowly that a held-out
    # model of it looks likelier under the far, wide fit), so its interval ends at 1.
    rng = np.random.default_rng(6)
    first, second = rng.normal(size=(6, 20)), rng.normal(size=(6, 20)) + 100
    draws = bootstrap({"forget": first}, {"forget": second}, resamples=30, seed=0)["forget"]
    assert draws["forget_score"].tolist() == [0.0] * 30
    assert percentile_interval(draws["forget_score"], 0.0, bounds=(0.0, 1.0)) == [0.0, 0.0]
    assert np.median(draws["attack_accuracy"]) == 1.0 and draws["attack_accuracy"].min() > 0.95
    assert percentile_interval(draws["attack_auc"], 1.0, bounds=(0.0, 1.0))[1] == 1.0


def test_bootstrap_intervals_hold_chance_for_one_distribution_and_exclude_it_for_a_shift():
    rng = np.random.default_rng(7)
    retrained = _pools_with_model_effects(rng, 16, 200)
    same = _pools_with_model_effects(rng, 16, 200)
    shifted = _pools_with_model_effects(rng, 16, 200, shift=3.0)
    for pool, inside in ((same, True), (shifted, False)):
        numbers = headline(summarize(compare_pools(pool, retrained), 16))
        draws = bootstrap({"forget": pool}, {"forget": retrained}, resamples=100, seed=0)["forget"]
        low, high = percentile_interval(draws["attack_accuracy"], numbers["attack_accuracy"])
        assert low <= numbers["attack_accuracy"] <= high
        assert (low <= 0.5 <= high) is inside, (low, high)
    # the attack leaves repeated models out with their copies: replicates of one distribution stay near ½
    assert abs(np.median(bootstrap({"f": same}, {"f": retrained}, 100, seed=0)["f"]["attack_accuracy"]) - 0.5) < 0.05


def test_bootstrap_is_reproducible_by_seed():
    rng = np.random.default_rng(8)
    first, second = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    one = bootstrap({"forget": first}, {"forget": second}, 20, seed=3)["forget"]["attack_auc"]
    again = bootstrap({"forget": first}, {"forget": second}, 20, seed=3)["forget"]["attack_auc"]
    other = bootstrap({"forget": first}, {"forget": second}, 20, seed=4)["forget"]["attack_auc"]
    assert np.array_equal(one, again) and not np.array_equal(one, other)


# --- the F-specific excess and the normalized attack ------------------------------------------------------

def test_excess_is_near_zero_for_a_temperature_and_positive_for_memorization():
    # The retrained pool sees F as unseen data: on F and on the matched sample its φ has one distribution.
    # A pool at another temperature (φ halved, on every example) differs from it as much on the matched sample
    # as on F: excess ≈ 0, the interval holds 0. A pool that memorized F (φ + 3 on F only, as the retrained
    # pool elsewhere) differs on F alone: the attack's excess is large and its interval excludes 0.
    rng = np.random.default_rng(9)
    retrained = {"forget": _pools_with_model_effects(rng, 16, 150), "matched": _pools_with_model_effects(rng, 16, 150)}
    tempered = {part: 0.5 * _pools_with_model_effects(rng, 16, 150) for part in ("forget", "matched")}
    memorized = {"forget": _pools_with_model_effects(rng, 16, 150, shift=3.0),
                 "matched": _pools_with_model_effects(rng, 16, 150)}
    results = {}
    for name, pool in (("tempered", tempered), ("memorized", memorized)):
        numbers = {part: headline(summarize(compare_pools(pool[part], retrained[part]), 16)) for part in pool}
        draws = bootstrap(pool, retrained, resamples=100, seed=0)
        results[name] = excess(numbers["forget"], numbers["matched"], draws)
    tempered_attack, memorized_attack = results["tempered"]["attack_accuracy"], results["memorized"]["attack_accuracy"]
    assert tempered_attack["forget"] > 0.6  # the temperature alone is visible to the attack on F …
    assert abs(tempered_attack["excess"]) < 0.05  # … but not specific to F
    assert tempered_attack["interval"][0] <= 0 <= tempered_attack["interval"][1]
    assert memorized_attack["excess"] > 0.3 and memorized_attack["interval"][0] > 0
    assert results["memorized"]["forget_score"]["excess"] < 0  # fewer points on F than on unseen examples
    assert excess(numbers["forget"], numbers["matched"], None)["attack_auc"]["interval"] is None


def test_normalized_attack_ignores_a_temperature():
    # Two classes: φ = z_y − z_other, linear in the logits, so logits × 3 give φ × 3 exactly. The unlearned pool
    # is the retrained pool's distribution at three times the temperature's inverse: the plain attack sees it, the
    # attack on φ standardized per model (over each model's own test examples) gives the same as without it.
    rng = np.random.default_rng(10)

    def phi_of(logits, labels):
        return logit_scaled_confidence(torch.tensor(logits), torch.tensor(labels)).numpy()

    labels, test_labels = rng.integers(0, 2, 40), rng.integers(0, 2, 300)
    pools = {name: (rng.normal(size=(8, 40, 2)) + 2 * np.eye(2)[labels], rng.normal(size=(8, 300, 2)))
             for name in ("unlearned", "retrained")}
    phi = {name: (phi_of(forget, np.broadcast_to(labels, (8, 40))), phi_of(test, np.broadcast_to(test_labels, (8, 300))))
           for name, (forget, test) in pools.items()}
    hot = (phi_of(3 * pools["unlearned"][0], np.broadcast_to(labels, (8, 40))),
           phi_of(3 * pools["unlearned"][1], np.broadcast_to(test_labels, (8, 300))))
    np.testing.assert_allclose(hot[0], 3 * phi["unlearned"][0], rtol=1e-12)
    retrained = standardize(*phi["retrained"])
    plain = likelihood_ratio_attack(phi["unlearned"][0], phi["retrained"][0])["accuracy"].mean()
    plain_hot = likelihood_ratio_attack(hot[0], phi["retrained"][0])["accuracy"].mean()
    normalized = likelihood_ratio_attack(standardize(*phi["unlearned"]), retrained)
    normalized_hot = likelihood_ratio_attack(standardize(*hot), retrained)
    assert plain_hot > plain + 0.2  # the temperature alone moves the plain attack
    np.testing.assert_allclose(normalized_hot["accuracy"], normalized["accuracy"], atol=1e-12)
    np.testing.assert_allclose(normalized_hot["auc"], normalized["auc"], atol=1e-12)
    # standardized φ: mean 0 and standard deviation 1 over the reference examples, per model
    scaled = standardize(phi["unlearned"][1], phi["unlearned"][1])
    np.testing.assert_allclose(scaled.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=1), 1, atol=1e-12)


def test_normalized_score_by_hand():
    # originals 0.1, ceiling 0.9: a pool at 0.5 closed half the distance, one at 0.05 lost ground
    assert normalized_score((0.5, None), (0.1, None), (0.9, None)) == {"value": pytest.approx(0.5), "interval": None}
    assert normalized_score((0.05, None), (0.1, None), (0.9, None))["value"] == pytest.approx(-0.0625)
    # replicates pair up draw by draw: (0.4 - 0.0) / (1.0 - 0.0) = 0.4, (0.6 - 0.2) / (0.6 - 0.2) = 1, ...
    draws = np.array([0.4, 0.6, 0.5, 0.5]), np.array([0.0, 0.2, 0.1, 0.1]), np.array([1.0, 0.6, 0.9, 0.9])
    scaled = normalized_score((0.5, draws[0]), (0.1, draws[1]), (0.9, draws[2]))
    ratios = np.array([0.4, 1.0, 0.5, 0.5])
    low, high = np.percentile(ratios, [2.5, 97.5]) - (np.median(ratios) - 0.5)
    assert scaled["interval"] == pytest.approx([low, high])
    # a ceiling not above the originals gives no scale; a draw whose scale collapses is dropped, and many such draws
    # leave no interval
    assert normalized_score((0.5, None), (0.4, None), (0.4, None)) is None
    assert normalized_score((0.5, None), (0.6, None), (0.4, None)) is None
    collapsed = normalized_score((0.5, draws[0]), (0.1, draws[1]), (0.9, np.array([0.0, 0.2, 0.1, 0.1])))
    assert collapsed == {"value": pytest.approx(0.5), "interval": None}
