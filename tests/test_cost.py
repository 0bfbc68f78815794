"""Cost accounting: the work meter, every method's predicted work against what it does, the cost cap in `apply` and
`tune`, retraining at a fraction of the recipe, and the cost fields of checkpoints, masks and results."""

import copy
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.cost import (RecordedCost, Work, WorkMeter, examples_in_steps, loop_examples, reference_units,
                              retrain_units, trained)
from unlearn_cli.data import create_dataset
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.mask import read_mask
from unlearn_cli.methods.retrain import resolved
from unlearn_cli.methods import (SetSizes, UnlearnData, fit_to_cap, get_method, list_methods, method_config,
                                 most_epochs_within, pipeline_work)
from unlearn_cli.models import create_model
from unlearn_cli.stacked import run_stacked
from unlearn_cli.tune import Candidate, Trial, cap_share, cheapest_within_standard_error, objective_standard_error
from unlearn_cli.tune.objectives import OracleFreeWeights, Outputs

DIGITS_TRAIN = 1437  # scikit-learn's 1,797 digits less the 360 the loader holds out as the test set


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


# --- the meter -------------------------------------------------------------------------------------------------------

def test_the_meter_counts_outermost_calls_forward_and_the_backward_passes_that_reach_them():
    model, inputs = tiny_net(), torch.randn(5, 4)
    with WorkMeter() as outer:
        model(inputs).sum().backward()  # 5 forward, 5 backward (the inner Flatten and Linear calls are not counted)
        with torch.no_grad():
            model(inputs[:2])  # 2 forward
        teacher = copy.deepcopy(model)
        with WorkMeter() as inner:
            teacher(inputs[:3])  # 3 forward, never back-propagated
        copy.deepcopy(model).to("meta")(torch.empty(7, 4, device="meta"))  # measuring a model: no arithmetic
    assert inner.work == Work(3, 0)
    assert outer.work == Work(10, 5) and outer.work.units == 20
    model(inputs)  # no meter open: nothing is counted, and nothing is left hooked
    assert outer.work == Work(10, 5)


def test_a_pool_trained_stacked_counts_every_model_once_per_example():
    models = [tiny_net() for _ in range(3)]
    batches = [[(torch.randn(4, 4), torch.randint(3, (4,)))] * 2 for _ in models]  # 2 steps of 4 examples each
    settings = method_config("finetune", {"epochs": 1, "lr": 0.01})
    from unlearn_cli.methods._common import loop_settings
    with WorkMeter() as meter:
        run_stacked(models, lambda epoch: batches, loop_settings(settings), 2, torch.device("cpu"))
    assert meter.work == trained(3 * 2 * 4)


def test_loop_arithmetic():
    assert examples_in_steps(10, 4, 3) == 10  # 4 + 4 + 2
    assert examples_in_steps(10, 4, 4) == 14  # the next pass begins
    assert loop_examples(10, 4, epochs=3) == 30 and loop_examples(10, 4, epochs=3, max_steps=5) == 18
    assert retrain_units({"epochs": 2, "batch_size": 4}, 10) == 60
    assert retrain_units({"epochs": 2, "batch_size": 4, "max_steps": 4}, 10) == 3 * 14
    assert retrain_units({}, 10) is None  # a recipe that does not say how long it trained
    recorded = RecordedCost(Work(30, 20), localize_units=10, retrain_units=100)
    assert recorded.pipeline_units == 80 and recorded.times_retrain() == 0.8
    assert reference_units(None, {"epochs": 1, "batch_size": 4}, RecordedCost(), 10) == 30
    assert reference_units("rft", {"epochs": 9}, recorded, 10) == 100  # an unlearned parent passes its own on


# --- every method's predicted work is what it does ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


@pytest.fixture(scope="module")
def unlearn_data(digits):
    """{arch: data}: the mlp for every method, the cnn for those that need convolutions."""
    forget = torch.arange(0, DIGITS_TRAIN, 13)  # 111 examples: no batch size below divides the sets
    factories = {"mlp": lambda: create_model("mlp", 10, (1, 8, 8), width=16),
                 "cnn": lambda: create_model("cnn", 10, (1, 8, 8), width=4, depth=2)}
    return {arch: UnlearnData.split(digits, forget, new_model=factory, training_config={"epochs": 3, "batch_size": 50})
            for arch, factory in factories.items()}


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.parametrize("capped", [False, True])
def test_every_method_predicts_exactly_the_work_it_does(unlearn_data, name, capped):
    unlearn_data = unlearn_data["cnn" if get_method(name).conv_only else "mlp"]
    options = {"epochs": 2, "batch_size": 50, "max_steps": 7 if capped else None, "num_samples": 9, "max_epochs": 1}
    cfg = method_config(name, {key: value for key, value in options.items()
                               if key in {f.name for f in dataclasses.fields(get_method(name).config_class)}})
    model = unlearn_data.new_model()
    predicted = get_method(name).work(copy.deepcopy(cfg), SetSizes.of(unlearn_data))
    with WorkMeter() as meter:
        get_method(name).run(model, unlearn_data, None, cfg)
    assert meter.work == predicted and predicted.units > 0


def test_a_training_run_records_its_passes(tmp_path):
    output = tmp_path / "m.safetensors"
    result = run_cli("train", *mlp_flags(width=8, epochs=2), "--batch-size", "100", "-o", output)
    assert result.exit_code == 0, result.output
    cost = load_checkpoint(str(output)).cost
    assert cost.work == Work(2 * DIGITS_TRAIN, 2 * DIGITS_TRAIN)  # two epochs: each example forward and back once
    assert (cost.localize_units, cost.retrain_units) == (None, None)


# --- the cap -----------------------------------------------------------------------------------------------------------

SIZES = SetSizes(forget=100, retain=900, train=1000, recipe={"epochs": 10, "batch_size": 100})
REFERENCE = 10 * 900 * 3  # retraining: 10 epochs over the retain set, forward and backward


def test_the_cap_refuses_exactly_the_runs_that_would_exceed_it():
    check = 2 * 900  # the recovery check forwards the whole retain set (under 1,024 examples) twice
    assert pipeline_work(trained(0), SIZES, None) == check
    one_epoch = 3 * 900 + check  # 4,500 = 1/6 of the reference
    cfg = method_config("finetune", {"epochs": 1})
    assert fit_to_cap("finetune", cfg, SIZES, None, REFERENCE, 1 / 6)[1] == one_epoch
    with pytest.raises(UserError, match="would cost 0.170× retraining, above the cap of 0.166"):
        fit_to_cap("finetune", cfg, SIZES, 100, REFERENCE, 0.166)  # the mask's localization tips it over
    assert most_epochs_within("finetune", cfg, SIZES, None, 0.4 * REFERENCE) == 3  # 3 × 2,700 + 1,800 ≤ 10,800
    assert most_epochs_within("finetune", cfg, SIZES, None, 0.05 * REFERENCE) == 0  # not even one epoch


def test_retrain_is_fitted_to_the_cap_with_its_whole_schedule():
    cfg, predicted = fit_to_cap("retrain", method_config("retrain", {}), SIZES, None, REFERENCE, 0.25)
    # a quarter of the recipe's 10 × 9 steps: 22 steps (22.5 rounded half to even), over which the whole schedule runs
    run = resolved(cfg, SIZES.recipe, SIZES.retain)
    assert cfg.fraction == 0.25 and (run.epochs, run.max_steps, run.batch_size) == (3, 22, 100)
    assert predicted == 3 * examples_in_steps(900, 100, 22) + 2 * 900


def test_retrain_at_a_fraction_equals_training_without_the_forget_set_for_that_share(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_REPRODUCIBLE", "1")
    forget, original = tmp_path / "f.json", tmp_path / "m.safetensors"
    common = ("--dataset", "digits", "--arch", "mlp", "--arch-option", "width=16", "-q")
    for arguments in (("split", "--dataset", "digits", "--fraction", "0.1", "-o", forget, "-q"),
                      ("train", *common, "--epochs", "4", "-o", original),
                      ("train", *common, "--epochs", "2", "--exclude", forget, "-o", tmp_path / "oracle2.safetensors"),
                      ("apply", "-m", original, "-f", forget, "--method", "retrain", "--max-cost", "0.5", "-q",
                       "-o", tmp_path / "retrain.safetensors")):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    compressed = load_checkpoint(str(tmp_path / "retrain.safetensors"))
    exact = load_checkpoint(str(tmp_path / "oracle2.safetensors"))
    for (name, value), (_, expected) in zip(compressed.model.state_dict().items(), exact.model.state_dict().items()):
        assert torch.equal(value, expected), name
    assert compressed.config["fraction"] == 0.5 and compressed.config["max_cost"] == 0.5
    retain = DIGITS_TRAIN - 144
    assert compressed.cost.retrain_units == 3 * 4 * retain
    assert compressed.cost.work.backward == 2 * retain


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cost")
    forget, original, mask = folder / "f.json", folder / "m.safetensors", folder / "mask.safetensors"
    for arguments in (("split", "--dataset", "digits", "--fraction", "0.1", "-o", forget, "-q"),
                      ("train", *mlp_flags(width=16, epochs=8), "-o", original),
                      ("localize", "-m", original, "-f", forget, "--budget", "0.3", "-q", "-o", mask)):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    return folder


def test_apply_records_its_work_with_the_masks_and_warns_above_half_a_retrain(small_run):
    folder = small_run
    output = folder / "del.safetensors"
    result = run_cli("apply", "-m", folder / "m.safetensors", "-f", folder / "f.json", "--mask",
                     folder / "mask.safetensors", "--epochs", "6", "-o", output)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(str(output))
    retain = DIGITS_TRAIN - 144
    localize = read_mask(str(folder / "mask.safetensors")).record  # del: a forward and backward pass over the forget set
    assert (localize.work_forward, localize.work_backward) == (144, 144)
    assert checkpoint.cost.localize_units == 3 * 144
    assert checkpoint.cost.work == trained(6 * retain) + Work(2 * len(range(0, retain, 2)), 0)
    assert checkpoint.cost.retrain_units == 3 * 8 * retain
    x = checkpoint.cost.times_retrain()
    assert f"warning: rft cost {x:.2f}× retraining" in result.output and f"({x:.3f}× retraining" in result.output


@pytest.mark.parametrize("value, code, message", [
    ("0", 1, "error: --max-cost: 0.0 is out of range; it must be > 0 and ≤ 1e+38\n"),
    ("-0.5", 1, "error: --max-cost: -0.5 is out of range; it must be > 0 and ≤ 1e+38\n"),
    ("half", 2, "Invalid value for '--max-cost': Input should be a valid number"),  # a usage error, as for every number
])
def test_apply_refuses_a_cap_that_is_not_a_positive_number(small_run, tmp_path, value, code, message):
    output = tmp_path / "out.safetensors"
    result = run_cli("apply", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--max-cost", value,
                     "-o", output)
    assert result.exit_code == code and message in result.output and not output.exists()


def test_apply_refuses_a_run_over_the_cap_and_writes_nothing(small_run, tmp_path):
    output = tmp_path / "out.safetensors"
    result = run_cli("apply", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--mask",
                     small_run / "mask.safetensors", "--epochs", "6", "--max-cost", "0.25", "-o", output)
    assert result.exit_code == 1 and not output.exists()
    assert "--max-cost 0.25: rft with these settings would cost 0.8" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_cap_above_one_is_accepted_with_a_note(small_run, tmp_path):
    result = run_cli("apply", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--method", "retrain",
                     "--max-cost", "1.5", "-o", tmp_path / "r.safetensors")
    assert result.exit_code == 0, result.output
    assert "note: --max-cost 1.5 lets the run cost more than retraining, which is exact at 1" in result.output


def test_tune_runs_only_what_fits_the_cap_and_names_the_rest(small_run, tmp_path):
    output = tmp_path / "best.yaml"
    result = run_cli("tune", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--strategy", "del",
                     "--budget", "0.3", "--grid", "epochs=cap,cap/2,6", "--grid", "lr=0.1", "--no-halving",
                     "--extend", "0", "--max-cost", "0.35", "-o", output)
    assert result.exit_code == 0, result.output
    assert "--max-cost 0.35: not run, over the cap: epochs=6 lr=0.1 (0.8" in result.output
    import yaml
    document = yaml.safe_load(output.read_text())
    ran = [candidate["settings"]["epochs"] for candidate in document["tune"]["candidates"]]
    assert sorted(ran) == [1, 2]  # the most epochs within 0.35× (2) and half of it
    assert all(candidate["cost"] <= 0.35 for candidate in document["tune"]["candidates"])
    search = document["tune"]
    assert document["apply"]["max_cost"] == 0.35 and search["search_backward"] > 0
    assert search["search_work"] == search["search_forward"] + 2 * search["search_backward"]


def test_tune_with_a_cap_below_one_epoch_of_any_candidate_is_an_error(small_run, tmp_path):
    output = tmp_path / "best.yaml"
    result = run_cli("tune", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--method", "finetune",
                     "--grid", "epochs=1,2", "--max-cost", "0.05", "-o", output)
    assert result.exit_code == 1 and not output.exists()
    assert result.output.startswith("error: --max-cost 0.05: no candidate fits the cap (epochs=1 (0.1")


def test_evaluate_shows_cost_and_older_results_without_it_still_read(small_run, tmp_path):
    output = tmp_path / "r.safetensors"
    assert run_cli("apply", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--method", "retrain",
                   "--max-cost", "0.25", "-q", "-o", output).exit_code == 0
    results = tmp_path / "results.json"
    result = run_cli("evaluate", small_run / "m.safetensors", output, "--forget", small_run / "f.json",
                     "--json", results)
    assert result.exit_code == 0, result.output
    assert "cost ×retrain" in result.output
    original, retrained = json.loads(results.read_text())["results"]
    retain = DIGITS_TRAIN - 144
    assert original["cost"] == {"work": 0, "unlearn_work": 0, "localize_work": None,  # no unlearning: nothing spent
                                "retrain_work": 3 * 8 * retain, "x_retrain": 0.0, "cap": None}
    # a quarter of the recipe, and the recovery check: 2 × 647 forwards, 4% of this tiny recipe
    assert retrained["cost"]["cap"] == 0.25
    assert retrained["cost"]["x_retrain"] == (3 * 2 * retain + 2 * 647) / (3 * 8 * retain)
    document = json.loads(results.read_text())
    for record in document["results"]:
        del record["cost"]
    results.write_text(json.dumps(document))
    assert run_cli("report", results).exit_code == 0


@pytest.mark.parametrize("key", ["work_forward", "retrain_work"])
def test_a_checkpoint_with_a_negative_work_count_is_refused(small_run, tmp_path, key):
    from unlearn_cli.io.safetensors_file import dump_safetensors, parse_safetensors
    tensors, meta = parse_safetensors((small_run / "m.safetensors").read_bytes(), "m")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(dump_safetensors(tensors, {**meta, key: "-3"}))
    result = run_cli("info", damaged)
    assert result.exit_code == 1
    assert f"metadata field '{key}' must be an integer in 0…" in result.output


# --- choosing the cheaper of two equally good candidates ------------------------------------------------------------------

def test_the_cheapest_candidate_within_one_standard_error_of_the_best_is_chosen():
    def trial(index, objective, error, cost):
        return Trial(Candidate(index, {"epochs": index}), 1.0, {"objective": objective, "objective_se": error},
                     cost=cost)

    ranked = [trial(0, 10.0, 2.0, 0.25), trial(1, 11.5, 1.0, 0.1), trial(2, 12.5, 1.0, 0.05)]
    assert cheapest_within_standard_error(ranked, lambda t: t.cost).candidate.index == 1  # 11.5 ≤ 12; 12.5 is not
    ranked[0].score["objective_se"] = math.nan  # no standard error: the best
    assert cheapest_within_standard_error(ranked, lambda t: t.cost).candidate.index == 0


def test_epochs_as_shares_of_the_cap():
    assert (cap_share("cap"), cap_share("cap/4"), cap_share(8)) == (1.0, 0.25, None)
    for bad in ("cap/0", "cap/x", "half"):
        with pytest.raises(UserError, match=f"--grid epochs={bad}: write a number of epochs, or cap, cap/2"):
            cap_share(bad)


def test_the_objectives_standard_error_is_seeded_and_zero_without_spread():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 0])
    outputs = Outputs(logits, labels, logits, labels, logits, labels)
    first = objective_standard_error(outputs, outputs, OracleFreeWeights(), draws=50, seed=3)
    assert first == objective_standard_error(outputs, outputs, OracleFreeWeights(), draws=50, seed=3) and first > 0
    constant = Outputs(logits[:2], labels[:2], logits[:2], labels[:2], logits[:2], labels[:2])
    assert objective_standard_error(constant, constant, OracleFreeWeights(), draws=20) == 0.0


def test_tune_refuses_a_cap_that_is_not_positive_before_any_work(small_run, tmp_path):
    output = tmp_path / "best.yaml"
    result = run_cli("tune", "-m", small_run / "m.safetensors", "-f", small_run / "f.json", "--method", "finetune",
                     "--grid", "lr=0.1", "--max-cost", "0", "-o", output)
    assert result.exit_code == 1 and not output.exists()
    assert result.output == "error: --max-cost: 0.0 is out of range; it must be > 0 and ≤ 1e+38\n"
