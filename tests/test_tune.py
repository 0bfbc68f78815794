"""`unlearn tune`: the reference draw, the objectives on hand-made logits, the search, and the command on digits."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.config import load_yaml_config
from unlearn_cli.errors import UserError
from unlearn_cli.tune import (Candidate, OracleFreeWeights, Outputs, Trial, edge_extensions, expand_grid,
                              extend_edges, ks_distance, oracle_free_score, parse_grid, planned_runs,
                              rank_candidates, successive_halving,
                              tuning_parts)

# --- the reference part ----------------------------------------------------------------------------------------


def test_reference_has_the_forget_sets_class_mix_and_parts_are_disjoint():
    test_labels = torch.arange(10).repeat_interleave(40)  # 40 test examples per class: 20 may be tuned on
    forget_labels = torch.tensor([2] * 7 + [5] * 30)  # class 5 asks for more than half of its tuning half
    parts = tuning_parts(test_labels, forget_labels, seed=3)
    counts = torch.bincount(test_labels[parts.reference], minlength=10).tolist()
    assert counts == [0, 0, 7, 0, 0, 10, 0, 0, 0, 0]  # min(wanted, half of the class's tuning half)
    assert torch.bincount(test_labels[parts.reported], minlength=10).tolist() == [20] * 10
    together = torch.cat([parts.reference, parts.validation, parts.reported])
    assert sorted(together.tolist()) == list(range(400))  # disjoint, and nothing lost
    assert torch.equal(parts.tuning, torch.cat([parts.reference, parts.validation]).sort().values)
    again = tuning_parts(test_labels, forget_labels, seed=3)
    assert torch.equal(again.reference, parts.reference) and torch.equal(again.validation, parts.validation)
    other = tuning_parts(test_labels, forget_labels, seed=4)
    assert not torch.equal(other.reference, parts.reference)
    assert not torch.equal(other.reported, parts.reported)


def test_the_reported_half_does_not_depend_on_the_forget_set():
    """Settings tuned on a validation forget set are reported on another: neither may have scored on the
    reported half."""
    test_labels = torch.arange(10).repeat_interleave(40)
    validation_set = tuning_parts(test_labels, torch.tensor([2] * 7 + [5] * 9), seed=3)
    reported_set = tuning_parts(test_labels, torch.tensor([2] * 8 + [5] * 8), seed=3)
    assert torch.equal(validation_set.reported, reported_set.reported)
    assert not torch.equal(validation_set.reference, reported_set.reference)
    assert torch.equal(validation_set.tuning, reported_set.tuning)


# --- objectives ---------------------------------------------------------------------------------------------------


def test_ks_distance_by_hand():
    # ECDFs at 0.1, 0.2, 0.25, 0.3, 0.35: first 1/3, 2/3, 2/3, 1, 1; second 0, 0, 1/2, 1/2, 1 -> sup 2/3
    assert ks_distance(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.25, 0.35])) == pytest.approx(2 / 3)
    assert ks_distance(torch.tensor([0.5, 0.5]), torch.tensor([0.5])) == 0.0


def logits_for(labels: list[int], correct: list[bool], confidence: float = 4.0) -> torch.Tensor:
    """Two-class logits: the true class gets `confidence` when `correct`, the other class otherwise."""
    logits = torch.zeros(len(labels), 2)
    for row, (label, right) in enumerate(zip(labels, correct)):
        logits[row, label if right else 1 - label] = confidence
    return logits


def outputs(forget_correct, reference_correct, validation_correct) -> Outputs:
    def part(correct):
        labels = [0] * len(correct)
        return logits_for(labels, correct), torch.tensor(labels)

    return Outputs(*part(forget_correct), *part(reference_correct), *part(validation_correct))


def test_oracle_free_objective_by_hand():
    original = outputs([True] * 4, [True] * 4, [True] * 4)  # reference 100%, validation 100%
    # candidate: forget 50%, reference 75%, validation 75%
    candidate = outputs([True, True, False, False], [True, True, True, False], [True, True, True, False])
    score = oracle_free_score(candidate, original, OracleFreeWeights(damage_allowance=5.0))
    assert score["forget_gap"] == pytest.approx(25.0)  # |50 − 75|
    # p_y is sigmoid(4) for a right answer and sigmoid(−4) for a wrong one: ECDFs differ by 1/2 − 1/4 at sigmoid(−4)
    assert score["distribution"] == pytest.approx(25.0)
    assert score["validation_drop"] == pytest.approx(25.0)  # 100 − 75
    assert score["damage"] == pytest.approx(20.0)  # 100 − 75 − 5
    assert score["objective"] == pytest.approx(95.0)
    weighted = oracle_free_score(candidate, original, OracleFreeWeights(distribution=0.0, damage=2.0))
    assert weighted["objective"] == pytest.approx(25.0 + 25.0 + 40.0)


def test_an_untouched_original_has_no_damage_but_a_forget_gap():
    original = outputs([True] * 4, [True, True, False, False], [True] * 4)
    score = oracle_free_score(original, original)
    assert score["damage"] == 0.0 and score["validation_drop"] == 0.0 and score["forget_gap"] == pytest.approx(50.0)


# --- the search -------------------------------------------------------------------------------------------------


def test_parse_and_expand_a_grid():
    grid = parse_grid(["lr=0.01,0.1", "epochs=5,10", "strategy-option=a"])
    assert grid == {"lr": [0.01, 0.1], "epochs": [5, 10], "strategy_option": ["a"]}
    settings = [candidate.settings for candidate in expand_grid(grid)]
    assert settings[:2] == [{"lr": 0.01, "epochs": 5, "strategy_option": "a"},
                            {"lr": 0.01, "epochs": 10, "strategy_option": "a"}] and len(settings) == 4
    assert expand_grid({}) == [Candidate(0, {})]


@pytest.mark.parametrize("texts, message", [
    (["lr"], "write it as option=value"), (["lr=0.1", "lr=0.2"], "given twice"), (["lr=0.1,0.1"], "listed twice"),
    (["lr=[1,2]"], "a value is not a number"),
])
def test_bad_grids(texts, message):
    with pytest.raises(UserError, match=message):
        parse_grid(texts)


def test_successive_halving_keeps_the_better_half_and_ranks_failures_last():
    quality = {0: 5.0, 1: 1.0, 2: None, 3: 3.0, 4: 4.0, 5: 2.0}  # None: diverges
    calls = []

    def run(candidate, fraction):
        calls.append((candidate.index, fraction))
        value = quality[candidate.index]
        if value is None:
            return Trial(candidate, fraction, failure="the loss became nan")
        return Trial(candidate, fraction, score={"objective": value / fraction})

    candidates = [Candidate(index, {"lr": index}) for index in range(6)]
    trials = successive_halving(candidates, run)
    assert [index for index, fraction in calls if fraction == 0.25] == [0, 1, 2, 3, 4, 5]
    assert [index for index, fraction in calls if fraction == 0.5] == [1, 5, 3]  # best three of the five left
    assert [index for index, fraction in calls if fraction == 1.0] == [1, 5]  # at least two go on
    ranked = rank_candidates(trials)
    assert [trial.candidate.index for trial in ranked] == [1, 5, 3, 4, 0, 2]
    assert ranked[-1].failure and math.isinf(ranked[-1].objective)
    assert planned_runs(6) == 6 + 3 + 2 and planned_runs(3) == 3


def test_few_candidates_all_run_in_full():
    seen = []
    successive_halving([Candidate(0, {}), Candidate(1, {})],
                       lambda c, f: seen.append(f) or Trial(c, f, score={"objective": 1.0}))
    assert seen == [1.0, 1.0]


def test_edge_choices_extend_the_grid_one_geometric_step():
    grid = {"lr": [0.03, 0.1], "epochs": [8, 16, 32], "budget": [0.1, 0.3], "schedule": ["cosine", "constant"]}
    steps = edge_extensions(grid, {"lr": 0.1, "epochs": 8, "budget": 0.2, "schedule": "cosine"})
    assert steps == {"lr": 0.333, "epochs": 4}  # 0.1 · (0.1 / 0.03) to 3 digits; budget 0.2 is inside; words never
    assert edge_extensions(grid, {"lr": 0.03, "epochs": 16}) == {"lr": 0.009}
    assert edge_extensions({"budget": [0.1, 0.3]}, {"budget": 0.3}) == {"budget": 0.9}  # not 0.8999999999999998
    assert edge_extensions({"epochs": [1, 2]}, {"epochs": 1}) == {}  # round(0.5) = 0 is no epoch count
    assert edge_extensions({"lr": [0.01, 1000]}, {"lr": 0.01}) == {"lr": 0.001}  # ÷10 at most


def test_extension_follows_the_best_until_it_is_interior_or_out_of_range():
    def run(candidate, fraction):  # the best learning rate is 0.5, and 0.9 is past the option's range
        return Trial(candidate, fraction, score={"objective": abs(candidate.settings["lr"] - 0.5)})

    grid = {"lr": [0.03, 0.1]}
    trials = [run(candidate, 1.0) for candidate in expand_grid(grid)]
    extended = extend_edges(grid, trials, run, admit=lambda candidate: candidate.settings["lr"] < 0.9, times=5)
    # 0.1 chose -> 0.333 (×3.33); 0.333 chose -> 1.11 refused: the search stops with 0.333 at the admitted edge
    assert extended == {"lr": [0.333]} and grid["lr"][-1] == 0.333
    assert rank_candidates(trials)[0].candidate.settings["lr"] == 0.333
    grid = {"lr": [0.03, 0.1]}
    trials = [run(candidate, 1.0) for candidate in expand_grid(grid)]
    assert extend_edges(grid, trials, run, admit=lambda candidate: True, times=1) == {"lr": [0.333]}


# --- config sections ----------------------------------------------------------------------------------------------


def test_a_file_with_command_sections_gives_each_command_its_own(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text("localize: {strategy: del, budget: 0.3}\napply: {method: rft, lr: 0.1}\ntune: {seed: 1}\n")
    assert load_yaml_config(path, "localize") == {"strategy": "del", "budget": 0.3}
    assert load_yaml_config(path, "apply") == {"method": "rft", "lr": 0.1}
    assert load_yaml_config(path, "train") == {}
    path.write_text("apply: {method: rft}\nlr: 0.1\n")
    with pytest.raises(UserError, match="option 'lr' stands outside the command sections"):
        load_yaml_config(path, "apply")


# --- the command --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A width-128 digits MLP (30 epochs) and a non-IID forget set of classes 2 and 5."""
    folder = tmp_path_factory.mktemp("tune")
    for arguments in (
        ("split", "--dataset", "digits", "--kind", "noniid", "--classes", "2,5", "--fraction", "0.1", "-q",
         "-o", folder / "forget.json"),
        ("train", *mlp_flags(width=128, epochs=30), "-o", folder / "original.safetensors"),
    ):
        assert run_cli(*arguments).exit_code == 0
    return folder


def test_tune_chooses_the_learning_rate_that_recovers_and_writes_a_config(digits, tmp_path, monkeypatch):
    import unlearn_cli.runs.tune as search

    masked = []  # the forget sets masks are computed for: each validation forget set has its own

    def compute_mask(model, data, forget_indices, *arguments, **options):
        masked.append(tuple(forget_indices.tolist()))
        return original_compute_mask(model, data, forget_indices, *arguments, **options)

    original_compute_mask = search.compute_mask
    monkeypatch.setattr(search, "compute_mask", compute_mask)
    best = tmp_path / "best.yaml"
    result = run_cli("tune", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                     "--strategy", "del", "--budget", "0.5", "--method", "rft", "--grid", "lr=0.000001,0.1",
                     "--param", "epochs=6", "-o", best)
    assert result.exit_code == 0, result.output
    # lr 1e-6 leaves half the network at its fresh initialization: the reference accuracy collapses (damage)
    # and validation accuracy is lost; lr 0.1 (or the larger step the edge extension tries) recovers it. The
    # oracle-free objective, the mean over three validation forget sets, must see that.
    document = yaml.safe_load(best.read_text())
    assert document["localize"] == {"strategy": "del", "budget": 0.5}
    lr = document["apply"]["lr"]
    assert document["apply"] == {"method": "rft", "epochs": 6, "lr": lr, "max_cost": 0.25}  # within the default cap
    candidates = {c["settings"]["lr"]: c for c in document["tune"]["candidates"]}
    assert lr >= 0.1 and candidates[lr]["objective"] < candidates[0.000001]["objective"]
    assert document["tune"]["objective"] == "oracle-free" and document["tune"]["value"] == candidates[lr]["objective"]
    assert "chosen" in result.stderr and "…" not in result.stderr
    # three forget sets, the given one first, each candidate's objective their mean
    sets = document["tune"]["validation_sets"]
    assert [one["seed"] for one in sets] == [0, 1, 2] and sets[0]["forget_sha256"] == document["tune"]["forget_sha256"]
    assert len({one["forget_sha256"] for one in sets}) == 3 and {one["size"] for one in sets} == {144}
    for candidate in candidates.values():
        assert candidate["objective"] == pytest.approx(sum(candidate["objectives"]) / 3)
    same = document["tune"]["stability"]["same_choice"]
    assert f"the mean over 3 validation forget sets; {sum(same)} of 3 alone chose it too" in result.stderr
    assert {"retain_fit", "confidence"} <= set(document["tune"]["parts"])
    assert len(masked) == len(set(masked)) == 3  # one localization setting (budget 0.5), one mask per set
    # the file is a config for localize and apply
    mask, model = tmp_path / "mask.safetensors", tmp_path / "del.safetensors"
    assert run_cli("localize", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                   "--config", best, "-q", "-o", mask).exit_code == 0
    applied = run_cli("apply", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                      "--mask", mask, "--config", best, "-q", "-o", model)
    assert applied.exit_code == 0, applied.output


def test_a_diverging_candidate_is_ranked_last_not_fatal(digits, tmp_path):
    best = tmp_path / "best.yaml"
    result = run_cli("tune", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                     "--method", "finetune", "--grid", "lr=1000000,0.01", "--param", "epochs=1", "--extend", "0",
                     "-q", "-o", best)
    assert result.exit_code == 0, result.output
    candidates = yaml.safe_load(best.read_text())["tune"]["candidates"]
    assert [c["settings"]["lr"] for c in candidates] == [0.01, 1000000]
    assert "the loss became" in candidates[1]["failure"] and candidates[1]["objective"] is None


@pytest.mark.parametrize("arguments, message", [
    (("--grid", "colour=1,2"), "method 'rft' has no such option"),
    (("--grid", "lr=0,0.1", "--strategy", "del", "--budget", "0.3"), "--grid lr: 0.0 is out of range"),
    (("--grid", "budget=0.1,0.3"), "a localization option needs --strategy"),
    (("--strategy", "del", "--grid", "lr=0.1"), "strategy del needs --budget"),
    (("--weight", "colour=2"), "--weight colour: choose among"),
])
def test_bad_searches_are_refused_before_any_work(digits, tmp_path, arguments, message):
    output = tmp_path / "best.yaml"
    result = run_cli("tune", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                     *arguments, "-o", output)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and not output.exists()


def test_apply_warns_when_the_finetune_did_not_recover(digits, tmp_path):
    mask = tmp_path / "mask.safetensors"
    assert run_cli("localize", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                   "--strategy", "del", "--budget", "0.5", "-q", "-o", mask).exit_code == 0
    result = run_cli("apply", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                     "--mask", mask, "--method", "rft", "--lr", "0.000001", "--epochs", "1", "-q",
                     "-o", tmp_path / "bad.safetensors")
    assert result.exit_code == 0, result.output
    assert "warning: retain accuracy fell from" in result.stderr and "try `unlearn tune`" in result.stderr
    recovered = run_cli("apply", "--model", digits / "original.safetensors", "--forget", digits / "forget.json",
                        "--mask", mask, "--method", "rft", "-q", "-o", tmp_path / "good.safetensors")
    assert recovered.exit_code == 0 and "warning: retain accuracy" not in recovered.stderr


def test_evaluate_reports_on_the_part_tuning_never_saw(digits, tmp_path):
    from unlearn_cli.data import create_dataset
    from unlearn_cli.io.forget import read_forget_set

    model, forget = digits / "original.safetensors", digits / "forget.json"
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    assert run_cli("evaluate", model, "--forget", forget, "-q", "--json", whole).exit_code == 0
    result = run_cli("evaluate", model, "--forget", forget, "--test-part", "reported", "--tune-seed", "3", "-q",
                     "--json", part)
    assert result.exit_code == 0, result.output
    data = create_dataset("digits")
    indices = read_forget_set(str(forget)).indices
    reported = tuning_parts(data.test_labels, data.train_labels[indices], seed=3).reported
    (record,) = yaml.safe_load(part.read_text())["results"]
    assert record["mia"]["test_part"] == {"part": "reported", "tune_seed": 3, "size": len(reported)}
    assert record["mia"]["nonmembers"] <= len(reported) < len(data.test_labels)
    # test accuracy over exactly those examples
    from unlearn_cli.engine import predict
    from unlearn_cli.io.checkpoint import load_checkpoint

    logits, labels = predict(load_checkpoint(str(model)).model, data.test_subset(reported).batches("test"))
    expected = 100.0 * float((logits.argmax(1) == labels).double().mean())
    assert record["metrics"]["test_accuracy"] == pytest.approx(expected)
    (all_record,) = yaml.safe_load(whole.read_text())["results"]
    assert "test_part" not in all_record["mia"]
    refused = run_cli("evaluate", model, "--forget", forget, "--test-part", "some", "-q")
    assert refused.exit_code == 1 and "--test-part 'some': choose all or reported" in refused.stderr


def test_oracle_metrics_of_another_test_part_are_not_reused(tiny_run, tmp_path):
    whole = tmp_path / "whole.json"
    common = ("--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"], "-q")
    assert run_cli("evaluate", tiny_run["original"], *common, "--json", whole).exit_code == 0
    refused = run_cli("evaluate", tiny_run["original"], *common, "--test-part", "reported", "--oracle-results", whole)
    assert refused.exit_code == 1 and "holds no measurement of oracle" in refused.stderr
