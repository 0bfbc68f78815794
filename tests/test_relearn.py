"""The relearning test (`evaluate --relearn`, `audit --relearn`, docs/relearn.md): the gap on hand-made curves, the
split of the forget set, that only the rest is scored, the refusals, and `evaluate` and `report` end to end."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math

import pytest
import torch
from torch import nn

from conftest import run_cli
from unlearn_cli.cli.options import declared_flags
from unlearn_cli.data import ImageData
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.metrics import metric_keys
from unlearn_cli.evaluate.relearn import (MOMENTUM, RelearnOptions, _full_batches, check_relearn_options, paired_gaps,
                                          relearn_curves, relearn_gap, relearn_record, split_forget_set)
from unlearn_cli.evaluate.results import result_record, results_document

T_975_2 = 4.302652729749464  # Student t, 97.5th percentile, 2 degrees of freedom (tables: 4.303)
T_975_1 = 12.706204736174696  # 1 degree of freedom (tables: 12.706)


# --- the gap ------------------------------------------------------------------------------------------------------


def test_the_gap_is_the_mean_difference_over_steps_one_to_s():
    # steps 1…3: (60 − 55) + (70 − 60) + (80 − 65) = 5 + 10 + 15 = 30, / 3 = 10; step 0 (90 vs 10) is left out
    assert relearn_gap([90.0, 60.0, 70.0, 80.0], [10.0, 55.0, 60.0, 65.0]) == 10.0
    assert relearn_gap([10.0, 55.0, 60.0, 65.0], [90.0, 60.0, 70.0, 80.0]) == -10.0  # slower than the oracle
    assert relearn_gap([50.0, 50.0], [0.0, 50.0]) == 0.0  # same curve after step 0: relearns like the oracle
    with pytest.raises(ValueError):
        relearn_gap([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        relearn_gap([1.0], [1.0])


def test_pools_pair_model_i_with_model_i_and_take_the_t_interval_over_pairs():
    first = torch.tensor([[0.0, 10.0, 20.0], [0.0, 20.0, 40.0], [0.0, 30.0, 60.0]]).numpy()
    second = torch.zeros(3, 3).numpy()
    # pair gaps: (10 + 20) / 2 = 15, 30, 45; mean 30, sample sd 15, margin t(0.975, 2) · 15 / √3 = 37.262
    entry = paired_gaps(first, second)
    assert entry["gap"] == 30.0 and entry["pairs"] == 3
    assert entry["margin"] == pytest.approx(T_975_2 * 15 / math.sqrt(3), abs=1e-9)
    assert entry["interval"] == pytest.approx([30 - entry["margin"], 30 + entry["margin"]])
    assert entry["curves"] == {"first": [0.0, 20.0, 40.0], "second": [0.0, 0.0, 0.0]}
    # a smaller second pool: the first two pairs, 15 and 30 (sd 10.607), margin t(0.975, 1) · 10.607 / √2 = 95.297
    entry = paired_gaps(first, second[:2])
    assert (entry["gap"], entry["pairs"]) == (22.5, 2)
    assert entry["margin"] == pytest.approx(T_975_1 * 7.5, abs=1e-9)
    one = paired_gaps(first[:1], second[:1])
    assert (one["gap"], one["pairs"], one["margin"], one["interval"]) == (15.0, 1, None, None)


# --- the split of the forget set ------------------------------------------------------------------------------------


def options(**given) -> RelearnOptions:
    return RelearnOptions(**{"relearn": True, **given})


def test_the_part_and_the_rest_are_disjoint_seeded_and_cover_the_forget_set():
    forget = torch.arange(100, 200, 2)  # 50 examples
    split = split_forget_set(forget, options(relearn_part=0.3, relearn_batch_size=4))
    assert (len(split.part), len(split.rest)) == (15, 35)
    assert torch.equal(torch.cat([split.part, split.rest]).sort().values, forget)
    assert not set(split.part.tolist()) & set(split.rest.tolist())
    assert split.part.tolist() == sorted(split.part.tolist()) and split.rest.tolist() == sorted(split.rest.tolist())
    again = split_forget_set(forget, options(relearn_part=0.3, relearn_batch_size=4))
    assert torch.equal(again.part, split.part)
    other = split_forget_set(forget, options(relearn_part=0.3, relearn_batch_size=4, relearn_seed=1))
    assert not torch.equal(other.part, split.part)
    assert len(split_forget_set(torch.arange(10), options(relearn_part=0.25, relearn_batch_size=1)).part) == 3  # 2.5 up


@pytest.mark.parametrize("count, part, batch, message", [
    (10, 1.0, 1, "--relearn-part 1 takes all 10 examples of the forget set and leaves none to score relearning on; "
                 "give a part below 1, e.g. --relearn-part 0.1"),
    (10, 0.96, 1, "--relearn-part 0.96 takes all 10 examples"),  # 9.6 rounds to 10
    (1, 0.5, 1, "the forget set holds 1 example; relearning needs at least 2"),
    (72, 0.1, 32, "--relearn-part 0.1 of the forget set's 72 examples is 7, fewer than one batch of "
                  "--relearn-batch-size 32; raise --relearn-part to 0.444 or lower --relearn-batch-size to 7"),
    (10, 0.5, 10, "is 5, fewer than one batch of --relearn-batch-size 10; lower --relearn-batch-size below 10"),
    (100, 0.001, 8, "is 0, fewer than one batch of --relearn-batch-size 8; raise --relearn-part to 0.08"),
])
def test_a_part_without_a_rest_or_a_batch_is_refused(count, part, batch, message):
    with pytest.raises(UserError) as refusal:
        split_forget_set(torch.arange(count), options(relearn_part=part, relearn_batch_size=batch))
    assert message in str(refusal.value)


@pytest.mark.parametrize("given, message", [
    (dict(relearn_lr=[0.1, 0.0]), "--relearn-lr: 0.0 is out of range; it must be > 0"),
    (dict(relearn_lr=[-0.1]), "--relearn-lr: -0.1 is out of range"),
    (dict(relearn_lr=[math.nan]), "--relearn-lr: nan is out of range"),
    (dict(relearn_lr=[math.inf]), "--relearn-lr: inf is out of range"),
    (dict(relearn_lr=[]), "--relearn-lr: give at least one learning rate"),
    (dict(relearn_lr=[0.1, 0.01, 0.1]), "--relearn-lr 0.1 is given twice"),
    (dict(relearn_steps=0), "--relearn-steps: 0 is out of range"),
    (dict(relearn_batch_size=0), "--relearn-batch-size: 0 is out of range"),
    (dict(relearn_part=0.0), "--relearn-part: 0.0 is out of range"),
    (dict(relearn=False, relearn_part=0.5), "--relearn-part is set but --relearn is not; add --relearn"),
])
def test_bad_relearning_options_are_refused_naming_the_flag(given, message):
    with pytest.raises(UserError) as refusal:
        check_relearn_options(options(**given))
    assert message in str(refusal.value)


def test_the_defaults_pass_and_the_learning_rates_default_is_shown_once():
    check_relearn_options(RelearnOptions())
    check_relearn_options(options())
    first, second = RelearnOptions(), RelearnOptions()
    first.relearn_lr.append(1.0)
    assert second.relearn_lr == [0.01, 0.1]  # each config its own list
    help_text = declared_flags(RelearnOptions)["relearn_lr"].parameter.annotation.__metadata__[0].help
    assert help_text.endswith("(default: 0.01, 0.1)")


# --- what is trained and what is scored -----------------------------------------------------------------------------


def two_pixel_data(forget: torch.Tensor, part: torch.Tensor, rest_like_part: bool) -> ImageData:
    """Images of two pixels, all labelled 1: the part's are (1, 0); the rest's (0, 1), or (1, 0) like the part's."""
    count = int(forget.max()) + 1
    inputs = torch.zeros(count, 1, 1, 2)
    inputs[:, 0, 0, 1 if not rest_like_part else 0] = 1.0
    inputs[part, 0, 0] = torch.tensor([1.0, 0.0])
    labels = torch.ones(count, dtype=torch.long)
    return ImageData("two-pixel", 2, (1, 1, 2), labels, labels[:4], inputs, inputs[:4])


def pixel_model() -> nn.Module:
    """Logits W·x without a bias; W = [[0, 1], [0, 0]]: a (0, 1) image is put in class 0, a (1, 0) image ties (0)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    return model


def test_only_the_rest_is_scored_and_the_model_is_not_changed():
    forget = torch.arange(40)
    settings = options(relearn_part=0.5, relearn_batch_size=4, relearn_steps=5, relearn_lr=[0.1, 1.0])
    split = split_forget_set(forget, settings)
    model = pixel_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    # the rest's pixel is one no part image lights: its weights get no gradient, so fitting A cannot reach F∖A
    curves = relearn_curves(model, two_pixel_data(forget, split.part, rest_like_part=False), split, settings,
                            torch.device("cpu"))
    assert curves == {0.1: [0.0] * 6, 1.0: [0.0] * 6}
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    # the same rest drawn like the part: relearning the part now carries over to the rest, step by step
    curves = relearn_curves(model, two_pixel_data(forget, split.part, rest_like_part=True), split, settings,
                            torch.device("cpu"))
    assert curves[1.0][0] == 0.0 and curves[1.0][-1] == 100.0 and len(curves[1.0]) == 6


def test_each_step_takes_a_full_seeded_batch_of_the_part():
    forget = torch.arange(30)
    settings = options(relearn_part=1 / 3, relearn_batch_size=4)  # a part of 10: 2 full batches an epoch, 2 left out
    split = split_forget_set(forget, settings)
    data = ImageData("index", 2, (1, 1, 1), torch.zeros(30, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                     torch.arange(30.0).reshape(30, 1, 1, 1), torch.zeros(2, 1, 1, 1))  # each image holds its index
    batches_for_epoch, steps_per_epoch = _full_batches(data, split, settings, torch.device("cpu"))
    epochs = [[inputs.flatten().long().tolist() for inputs, _ in batches_for_epoch(epoch)] for epoch in range(3)]
    assert steps_per_epoch == 2 and all(len(epoch) == 2 for epoch in epochs)
    assert all(len(batch) == 4 and set(batch) <= set(split.part.tolist()) for epoch in epochs for batch in epoch)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    again, _ = _full_batches(data, split, settings, torch.device("cpu"))
    assert [inputs.flatten().long().tolist() for inputs, _ in again(1)] == epochs[1]  # and seeded


def test_the_record_holds_both_curves_and_the_gap():
    forget = torch.arange(20)
    settings = options(relearn_part=0.5, relearn_batch_size=5, relearn_steps=2, relearn_lr=[0.5])
    split = split_forget_set(forget, settings)
    record = relearn_record({0.5: [10.0, 40.0, 60.0]}, {0.5: [10.0, 20.0, 40.0]}, split, settings)
    assert record == {"part": 0.5, "part_size": 10, "rest_size": 10, "seed": 0, "steps": 2, "batch_size": 5,
                      "momentum": MOMENTUM, "curves": [{"lr": 0.5, "accuracy": [10.0, 40.0, 60.0],
                                                        "oracle_accuracy": [10.0, 20.0, 40.0], "gap": 20.0}]}


# --- end to end -------------------------------------------------------------------------------------------------------


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_evaluate_relearn_end_to_end(tiny_run, tmp_path):
    inputs = [tiny_run["original"], tiny_run["oracle"], tiny_run["forget"]]
    before = [sha256(path) for path in inputs]
    output = tmp_path / "results.json"
    result = run_cli("evaluate", tiny_run["original"], tiny_run["oracle"], "--forget", tiny_run["forget"], "--oracle",
                     tiny_run["oracle"], "--relearn", "--relearn-part", "0.5", "--relearn-batch-size", "8",
                     "--relearn-steps", "4", "--relearn-lr", "0.01", "--relearn-lr", "0.1", "--json", output)
    assert result.exit_code == 0, result.output
    assert [sha256(path) for path in inputs] == before
    assert "relearn gap, lr 0.01" in result.stderr and "F∖A acc, 4 steps at lr 0.1" in result.stderr
    original, oracle = json.loads(output.read_text())["results"]
    for record in (original, oracle):
        relearn = record["relearn"]
        assert {key: relearn[key] for key in ("part", "part_size", "rest_size", "steps", "batch_size")} == {
            "part": 0.5, "part_size": 36, "rest_size": 36, "steps": 4, "batch_size": 8}
        assert [curve["lr"] for curve in relearn["curves"]] == [0.01, 0.1]
        for curve in relearn["curves"]:
            assert len(curve["accuracy"]) == len(curve["oracle_accuracy"]) == 5
            assert curve["gap"] == pytest.approx(relearn_gap(curve["accuracy"], curve["oracle_accuracy"]))
    # the oracle evaluated against itself: the same copies, batches and steps, so the same curve and no gap
    assert all(curve["accuracy"] == curve["oracle_accuracy"] and curve["gap"] == 0.0
               for curve in oracle["relearn"]["curves"])
    assert original["relearn"]["curves"][0]["oracle_accuracy"] == oracle["relearn"]["curves"][0]["accuracy"]
    # step 0 is the model's own accuracy on the rest: the original, trained on F, starts higher than the oracle
    assert original["relearn"]["curves"][0]["accuracy"][0] > oracle["relearn"]["curves"][0]["accuracy"][0]

    report = run_cli("report", output, "--format", "csv")
    assert report.exit_code == 0, report.output
    rows = {row["method"]: row for row in csv.DictReader(io.StringIO(report.stdout))}
    assert float(rows["original"]["relearn_gap_lr0.1_mean"]) == pytest.approx(original["relearn"]["curves"][1]["gap"])
    assert rows["oracle"]["relearn_gap_lr0.1_mean"] == ""


def results_with_gaps(path, gaps: list[float | None]):
    """A results file of one pipeline run with seeds 0, 1, …, each relearned at lr 0.1 with the given gap (None: a run
    evaluated without --relearn)."""
    forget = {"source": "forget.json", "sha256": "f" * 64, "kind": "iid", "size": 20}
    metrics = {key: 50.0 for key in metric_keys()}
    records = []
    for seed, gap in enumerate(gaps):
        relearn = None if gap is None else {"part": 0.5, "part_size": 10, "rest_size": 10, "seed": 0, "steps": 1,
                                            "batch_size": 5, "momentum": MOMENTUM, "curves": [
                                                {"lr": 0.1, "accuracy": [0.0, gap], "oracle_accuracy": [0.0, 0.0],
                                                 "gap": gap}]}
        records.append(result_record(
            model={"source": f"m{seed}.safetensors", "sha256": f"{seed}" * 64, "arch": "mlp", "dataset": "digits",
                   "num_classes": 10}, method="finetune", strategy=None, budget=None, seed=seed, forget=forget,
            metrics=metrics, oracle=None, comparison=None, allow_mismatch=False, parent=None, fraction_changed=None,
            wall_time_s=None, mask_sha256=None, mia={"members": 1, "nonmembers": 1, "forget": 20, "seed": 0},
            relearn=relearn))
    path.write_text(json.dumps(results_document(records)))
    return path


def test_report_aggregates_the_gap_over_seeds_and_leaves_it_out_of_files_without_it(tmp_path):
    result = run_cli("report", results_with_gaps(tmp_path / "r.json", [10.0, 20.0, 30.0, None]), "--format", "csv")
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    # gaps 10, 20, 30 (the fourth run has none): mean 20, sd 10, margin t(0.975, 2) · 10 / √3 = 24.841
    assert float(row["relearn_gap_lr0.1_mean"]) == 20.0 and row["n"] == "4"
    assert float(row["relearn_gap_lr0.1_margin"]) == pytest.approx(T_975_2 * 10 / math.sqrt(3), abs=1e-6)
    table = run_cli("report", tmp_path / "r.json")
    assert "relearn gap lr 0.1" in table.stderr
    result = run_cli("report", results_with_gaps(tmp_path / "old.json", [None, None]), "--format", "csv")
    assert result.exit_code == 0 and "relearn" not in result.stdout
    assert "relearn" not in run_cli("report", tmp_path / "old.json").stderr


def test_a_damaged_relearn_object_is_refused(tmp_path):
    path = results_with_gaps(tmp_path / "r.json", [10.0])
    document = json.loads(path.read_text())
    document["results"][0]["relearn"]["curves"][0]["gap"] = "high"
    path.write_text(json.dumps(document))
    result = run_cli("report", path)
    assert result.exit_code == 1
    assert "results[0].relearn.curves[0].gap must be a number or null" in result.stderr
