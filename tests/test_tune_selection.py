"""`unlearn tune` on K validation forget sets and with the calibration step: the choice over per-set scores by hand,
the draw of the sets, the refusals, and the calibrated candidates of a tiny search."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import TINY_MLP, run_cli
from unlearn_cli.data.splits import draw_forget_indices, draw_from_tercile
from unlearn_cli.errors import UserError
from unlearn_cli.tune import (Candidate, Trial, cheapest_within_standard_error, draw_validation_sets, mean_score,
                              rank_candidates, retain_sample, selection_stability, set_objectives,
                              standard_error_of_mean)

# --- the choice over K sets, on hand-made scores ------------------------------------------------------------------


def test_the_standard_error_of_the_mean_takes_the_larger_of_the_spread_and_the_sets_own_errors():
    assert standard_error_of_mean([7.0], [1.5]) == 1.5  # one set: its bootstrap error as it is
    # spread v = ((10−12)² + 0 + (14−12)²) / 2 = 4 beats the sets' own errors (mean s² = 1): √(4/3)
    assert standard_error_of_mean([10.0, 12.0, 14.0], [1.0, 1.0, 1.0]) == pytest.approx(math.sqrt(4 / 3))
    # the sets' own errors (mean s² = 9) beat the spread: √(9/3)
    assert standard_error_of_mean([10.0, 12.0, 14.0], [3.0, 3.0, 3.0]) == pytest.approx(math.sqrt(3))
    # an error that is unknown is left out of the mean of the squared errors
    assert standard_error_of_mean([10.0, 12.0, 14.0], [3.0, math.nan, None]) == pytest.approx(math.sqrt(3))
    assert standard_error_of_mean([5.0, 5.0], [0.0, 0.0]) == 0.0


def test_the_mean_score_averages_every_number_and_keeps_one_set_as_it_is():
    first = {"objective": 10.0, "damage": 2.0, "confidence": 4.0, "objective_se": 1.0}
    second = {"objective": 14.0, "damage": 4.0, "objective_se": 1.0}  # its V′ held one class: no confidence part
    merged = mean_score([first, second])
    assert list(merged) == ["objective", "damage", "confidence", "objective_se"]
    assert merged["objective"] == 12.0 and merged["damage"] == 3.0 and merged["confidence"] == 4.0
    assert merged["objective_se"] == pytest.approx(math.sqrt(8 / 2))  # spread (4 + 4) / 1 = 8 over K = 2
    assert mean_score([first]) == first and mean_score([first]) is not first


def _trial(index: int, per_set: list[float], cost: float, fraction: float = 1.0) -> Trial:
    scores = [{"objective": value, "objective_se": 1.0} for value in per_set]
    return Trial(Candidate(index, {"lr": index}), fraction, score=mean_score(scores), cost=cost, set_scores=scores)


def test_each_set_alone_is_asked_which_candidate_it_would_choose():
    # per-set objectives (bootstrap SE 1 each); costs A 0.1 < B 0.2 < C 0.3
    trials = [_trial(0, [10.0, 30.0, 13.0], 0.1),  # A: mean 17.67, the best on set 1
              _trial(1, [12.0, 12.0, 12.0], 0.2),  # B: mean 12, SE √(1/3): chosen on the mean
              _trial(2, [20.0, 9.0, 11.5], 0.3),  # C: mean 13.5, the best on sets 2 and 3
              _trial(3, [1.0, 1.0, 1.0], 0.01, fraction=0.5),  # stopped early: never chosen
              Trial(Candidate(4, {"lr": 4}), 1.0, failure="the loss became nan", cost=0.01)]
    ranked = rank_candidates(trials)
    assert [trial.candidate.index for trial in ranked] == [1, 2, 0, 3, 4]

    def cost(trial):
        return trial.cost

    chosen = cheapest_within_standard_error(ranked, cost)
    assert chosen.candidate.index == 1 and chosen.score["objective_se"] == pytest.approx(math.sqrt(1 / 3))
    # set 1 alone: A (10) and none within 1 of it; set 2: C (9); set 3: C (11.5) is best but B (12) lies within
    # its standard error and is cheaper, so set 3 alone chooses B as the mean does
    assert selection_stability(ranked, chosen, cost) == {"same_choice": [False, False, True], "share": 1 / 3}
    assert set_objectives(ranked[2]) == [10.0, 30.0, 13.0] and set_objectives(ranked[-1]) == []
    one_set = Trial(Candidate(0, {}), 1.0, score={"objective": 1.0})
    assert selection_stability([one_set], one_set, cost) is None


# --- the validation forget sets -----------------------------------------------------------------------------------


def test_validation_sets_are_the_given_one_then_distinct_draws_of_its_split():
    labels = torch.arange(10).repeat(20)  # 200 examples, 20 per class
    given = draw_forget_indices(labels, "noniid", 0.05, [2, 5], seed=4)
    sets = draw_validation_sets(labels, given, "noniid", 0.05, [2, 5], seed=4, count=3)
    assert [seed for seed, _ in sets] == [4, 5, 6] and sets[0][1] is given
    for seed, indices in sets:
        assert torch.equal(indices, draw_forget_indices(labels, "noniid", 0.05, [2, 5], seed))  # the same draw
    assert len({tuple(indices.tolist()) for _, indices in sets}) == 3
    again = draw_validation_sets(labels, given, "noniid", 0.05, [2, 5], seed=4, count=3)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(sets, again))


def test_a_seed_that_draws_a_set_already_taken_is_skipped_and_a_split_too_small_is_refused():
    labels = torch.tensor([0, 1, 2, 2, 2, 3])  # class 2 has three examples: 2 of them make 3 distinct sets
    given = draw_forget_indices(labels, "class", 2 / 3, [2], seed=0)
    sets = draw_validation_sets(labels, given, "class", 2 / 3, [2], seed=0, count=3)
    seeds = [seed for seed, _ in sets]
    assert len({tuple(indices.tolist()) for _, indices in sets}) == 3 and seeds == sorted(seeds)
    skipped = [seed for seed in range(1, seeds[-1]) if seed not in seeds]
    assert skipped == [2]  # seed 2 draws what seed 0 drew
    for seed in skipped:  # every seed passed over drew a set already taken
        drawn = draw_forget_indices(labels, "class", 2 / 3, [2], seed)
        assert any(torch.equal(drawn, indices) for _, indices in sets)
    with pytest.raises(UserError, match=r"--validation-sets 4: the split \(class, fraction 0.666667, classes \[2\]\) "
                                        r"gives only 3 distinct forget sets"):
        draw_validation_sets(labels, given, "class", 2 / 3, [2], seed=0, count=4)
    whole = draw_forget_indices(labels, "class", 1.0, [2], seed=0)
    with pytest.raises(UserError, match="gives only 1 distinct forget set, whatever the seed; pass --validation-sets 1"):
        draw_validation_sets(labels, whole, "class", 1.0, [2], seed=0, count=2)


def test_a_memorization_split_is_redrawn_from_the_same_tercile_of_its_scores():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.8, 0.2, 0.4, 0.7, 0.3, 0.6])  # high tercile: examples 0, 3 and 6
    labels = torch.zeros(9, dtype=torch.long)
    given = draw_from_tercile(scores, "high", 2 / 9, seed=0)  # 2 of the 3: 3 distinct sets
    sets = draw_validation_sets(labels, given, "memorization", 2 / 9, None, seed=0, count=3,
                                memorization=(scores, "high"))
    assert sorted(tuple(indices.tolist()) for _, indices in sets) == [(0, 3), (0, 6), (3, 6)]
    assert all(torch.equal(indices, draw_from_tercile(scores, "high", 2 / 9, seed)) for seed, indices in sets)
    with pytest.raises(UserError, match=r"--validation-sets 4: the split \(memorization, level high, fraction 0.222222\) "
                                        r"gives only 3 distinct forget sets, whatever the seed; pass --validation-sets 3"):
        draw_validation_sets(labels, given, "memorization", 2 / 9, None, seed=0, count=4, memorization=(scores, "high"))


def test_the_retain_sample_is_seeded_sorted_and_outside_the_forget_set():
    forget = torch.tensor([0, 5, 7])
    sample = retain_sample(2000, forget, seed=3)
    assert len(sample) == 1024 and torch.equal(sample, sample.sort().values) and len(sample.unique()) == 1024
    assert not torch.isin(sample, forget).any()
    assert torch.equal(sample, retain_sample(2000, forget, seed=3))
    assert not torch.equal(sample, retain_sample(2000, forget, seed=4))
    assert retain_sample(10, forget, seed=0).tolist() == [1, 2, 3, 4, 6, 8, 9]  # fewer than 1,024: all of them


# --- the command --------------------------------------------------------------------------------------------------


def _tune(tiny_run, output, *arguments):
    return run_cli("tune", "-m", tiny_run["original"], "--method", "finetune", "--param", "epochs=1", "--extend", "0",
                   "-q", "-o", output, *arguments)


@pytest.mark.parametrize("split, arguments, message", [
    (("--kind", "class", "--classes", "2", "--fraction", "1"), (),
     "--validation-sets 3: the split of {forget} (class, fraction 1, classes [2]) gives only 1 distinct forget set, "
     "whatever the seed; pass --validation-sets 1"),
    (("--kind", "mislabel", "--fraction", "0.05"), ("--validation-sets", "2"),
     "--validation-sets 2: {forget} carries a mislabel manipulation, which only a model trained on it unlearns, so no "
     "other forget set can be drawn for it; pass --validation-sets 1"),
    (None, ("--oracle", "{oracle}", "--validation-sets", "2"),
     "--validation-sets 2: --oracle scores on the one forget set its oracle was trained without; pass "
     "--validation-sets 1 or drop it"),
    (None, ("--grid", "calibrate=1,0"),
     "--grid calibrate=1: calibrate is true or false, e.g. --grid calibrate=false,true"),
])
def test_what_cannot_be_searched_on_k_sets_is_one_line(tiny_run, tmp_path, split, arguments, message):
    forget = tiny_run["forget"]
    if split is not None:
        forget = tmp_path / "forget.json"
        assert run_cli("split", "--dataset", "digits", *split, "-q", "-o", forget).exit_code == 0
    output = tmp_path / "best.yaml"
    result = _tune(tiny_run, output, "-f", forget, *(a.format(oracle=tiny_run["oracle"]) for a in arguments))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == f"error: {message.format(forget=forget)}\n" and not output.exists()


def test_a_search_over_calibrate_records_the_scales_and_a_calibrating_choice_tells_apply(tiny_run, tmp_path):
    best = tmp_path / "best.yaml"
    result = _tune(tiny_run, best, "-f", tiny_run["forget"], "--grid", "calibrate=false,true", "--validation-sets", "2")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(best.read_text())
    candidates = {c["settings"]["calibrate"]: c for c in document["tune"]["candidates"]}
    assert candidates[True]["calibration_scale"] > 0 and "calibration_scale" not in candidates[False]
    assert all(len(c["objectives"]) == 2 and "oracle_scale" not in c for c in candidates.values())
    stability = document["tune"]["stability"]
    assert len(stability["same_choice"]) == 2 and stability["share"] == sum(stability["same_choice"]) / 2
    chosen = candidates[True].get("chosen", False)
    assert chosen != candidates[False].get("chosen", False)  # one of the two is marked chosen
    assert ("calibrate" in document["apply"]) == chosen and "calibrate" not in document["tune"]["fixed"]
    # with the oracle: one set, every candidate calibrated, the oracle's own scale beside the fitted one
    result = _tune(tiny_run, best, "-f", tiny_run["forget"], "--oracle", tiny_run["oracle"], "--calibrate",
                   "--grid", "lr=0.01,0.1")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(best.read_text())
    assert document["apply"]["calibrate"] is True and document["apply"]["tune_seed"] == 0
    assert document["tune"]["fixed"]["calibrate"] is True
    assert "stability" not in document["tune"] and "validation_sets" not in document["tune"]
    for candidate in document["tune"]["candidates"]:
        assert candidate["calibration_scale"] > 0 and candidate["oracle_scale"] > 0 and "objectives" not in candidate
    assert {"calibration_scale", "oracle_scale"} <= set(document["tune"]["parts"])


def test_a_depleting_forget_set_is_scored_against_the_depletion_estimate_and_its_work_counted(tiny_run, tmp_path):
    best = tmp_path / "best.yaml"
    result = _tune(tiny_run, best, "-f", tiny_run["forget"], "--validation-sets", "2")  # classes 2 and 5: depleted
    assert result.exit_code == 0, result.output
    tune = yaml.safe_load(best.read_text())["tune"]
    assert all(one["forget_drop"] > 0 for one in tune["validation_sets"])
    assert 0 < tune["depletion_work"] < tune["search_work"] and tune["depletion_x_retrain"] > 0
    parts = tune["parts"]
    assert parts["forget_gap"] == pytest.approx(abs(parts["forget_accuracy"] - parts["forget_target"]))
    result = _tune(tiny_run, best, "-f", tiny_run["forget"], "--validation-sets", "2", "--depletion", "off")
    assert result.exit_code == 0, result.output
    tune = yaml.safe_load(best.read_text())["tune"]
    assert "depletion_work" not in tune and "forget_target" not in tune["parts"]
    assert all("forget_drop" not in one for one in tune["validation_sets"])
    # an IID forget set depletes no class: auto leaves the estimate out, on runs it
    iid = tmp_path / "iid.json"
    assert run_cli("split", "--dataset", "digits", "--kind", "iid", "--fraction", "0.05", "-q", "-o", iid).exit_code == 0
    for depletion, estimated in (("auto", False), ("on", True)):
        result = _tune(tiny_run, best, "-f", iid, "--validation-sets", "1", "--depletion", depletion)
        assert result.exit_code == 0, result.output
        assert ("depletion_work" in yaml.safe_load(best.read_text())["tune"]) == estimated


def test_a_depletion_estimate_that_cannot_apply_is_one_line(tiny_run, tmp_path):
    test_what_cannot_be_searched_on_k_sets_is_one_line(
        tiny_run, tmp_path, None, ("--oracle", "{oracle}", "--depletion", "on"),
        "--depletion on: with --oracle a candidate is scored by its gap to the oracle, which needs no estimate of it; "
        "drop --depletion or --oracle")
    forget, model, output = tmp_path / "mislabel.json", tmp_path / "manipulated.safetensors", tmp_path / "best.yaml"
    assert run_cli("split", "--dataset", "digits", "--kind", "mislabel", "--fraction", "0.05", "-q",
                   "-o", forget).exit_code == 0
    assert run_cli("train", *TINY_MLP, "--manipulate", forget, "-o", model).exit_code == 0
    result = run_cli("tune", "-m", model, "-f", forget, "--method", "finetune", "--param", "epochs=1", "-q",
                     "--validation-sets", "1", "--depletion", "on", "-o", output)
    assert result.exit_code == 1 and not output.exists(), result.output
    assert result.stderr == (f"error: --depletion on: {forget} carries a mislabel manipulation, whose reference is "
                             f"unseen data manipulated the same way, not a depleted class; pass --depletion off\n")
