"""Corrective unlearning: manipulated forget sets (mislabel, poison), training on them, and the repair metrics."""

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.data import ImageData, create_dataset
from unlearn_cli.data.manipulation import Manipulation, draw_known, draw_manipulation
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.metrics import Corrective, evaluate_outputs, model_metrics
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.hashing import sha256_indices
from unlearn_cli.lineage import data_as_trained
from unlearn_cli.tune.objectives import OracleFreeWeights, Outputs, oracle_free_score

DIGITS_MLP = mlp_flags(width=64, epochs=30)


def tiny_images(count: int = 6, size: int = 4) -> ImageData:
    """count 1×size×size images with values 0.1 … 0.9 (never the extremes 0 and 1 except where set), labels 0, 1, 2, …"""
    inputs = torch.linspace(0.1, 0.9, count * size * size).reshape(count, 1, size, size)
    inputs[0, 0, 0, 0], inputs[1, 0, 0, 0] = 1.0, 0.0  # the training set's extremes
    labels = torch.arange(count) % 3
    return ImageData(name="tiny", num_classes=3, input_shape=(1, size, size), train_labels=labels.clone(),
                     test_labels=labels.clone(), train_inputs=inputs.clone(), test_inputs=inputs.clone())


# --- the manipulations, applied exactly ---------------------------------------------------------------------

def test_poison_stamps_the_patch_and_changes_nothing_else():
    data = tiny_images()
    poison = Manipulation("poison", torch.tensor([1, 4]), torch.tensor([0, 0]), target=0, patch=2, corner="br")
    manipulated = poison.apply(data)
    changed = manipulated.train_inputs != data.train_inputs
    # example 1 and 4: exactly the bottom-right 2×2 pixels, set to the training images' largest value 1.0
    expected = torch.zeros_like(changed)
    expected[[1, 4], 0, 2:, 2:] = True
    assert torch.equal(changed, expected)
    assert torch.equal(manipulated.train_inputs[[1, 4], 0, 2:, 2:], torch.ones(2, 2, 2))
    assert manipulated.train_labels.tolist() == [0, 0, 2, 0, 0, 2]  # 1 -> 0 and 4 -> 0; the rest as they were
    assert torch.equal(data.train_labels, torch.arange(6) % 3)  # the data as read is untouched
    assert torch.equal(manipulated.test_inputs, data.test_inputs)  # the test set is never manipulated


@pytest.mark.parametrize("corner, rows, columns", [("tl", slice(0, 2), slice(0, 2)), ("tr", slice(0, 2), slice(2, 4)),
                                                   ("bl", slice(2, 4), slice(0, 2)), ("br", slice(2, 4), slice(2, 4))])
def test_each_corner_and_the_min_value(corner, rows, columns):
    data = tiny_images()
    poison = Manipulation("poison", torch.tensor([2]), torch.tensor([0]), target=0, patch=2, corner=corner, value="min")
    image = poison.apply(data).train_inputs[2, 0]
    expected = data.train_inputs[2, 0].clone()
    expected[rows, columns] = 0.0  # the training images' smallest value
    assert torch.equal(image, expected)


def test_mislabel_rules_change_labels_and_nothing_else():
    labels = create_dataset("digits").train_labels
    for to in ("random", "next", 7):
        drawn = draw_manipulation(labels, "mislabel", 0.1, None, seed=3, to=to)
        assert len(drawn.indices) == round(0.1 * len(labels))
        true = labels[drawn.indices]
        assert bool((drawn.labels != true).all())  # every label is wrong
        if to == "next":
            assert torch.equal(drawn.labels, (true + 1) % 10)
        if to == 7:
            assert bool((drawn.labels == 7).all()) and not bool((true == 7).any())
    random = draw_manipulation(labels, "mislabel", 0.1, None, seed=3, to="random")
    assert len(torch.unique(random.labels)) == 10  # spread over the classes, not one fixed shift
    data = create_dataset("digits")
    manipulated = random.apply(data)
    assert torch.equal(manipulated.train_inputs, data.train_inputs)
    differs = torch.nonzero(manipulated.train_labels != data.train_labels).flatten()
    assert torch.equal(differs, random.indices)


def test_draws_are_deterministic_per_seed_and_poison_avoids_the_target():
    labels = create_dataset("digits").train_labels
    first = draw_manipulation(labels, "poison", 0.05, None, seed=0, target=3)
    again = draw_manipulation(labels, "poison", 0.05, None, seed=0, target=3)
    other = draw_manipulation(labels, "poison", 0.05, None, seed=1, target=3)
    assert torch.equal(first.indices, again.indices) and first.sha256 == again.sha256
    assert not torch.equal(first.indices, other.indices)
    assert not bool((labels[first.indices] == 3).any()) and bool((first.labels == 3).all())
    within = draw_manipulation(labels, "poison", 0.02, [3, 5], seed=0, target=3)
    assert set(labels[within.indices].tolist()) == {5}  # --classes, minus the target


def test_known_share_is_a_seeded_subset():
    indices = torch.arange(0, 100, 3)  # 34 indices
    half = draw_known(indices, 0.5, seed=0)
    assert len(half) == 17 and bool(torch.isin(half, indices).all()) and torch.equal(half, half.sort().values)
    assert torch.equal(half, draw_known(indices, 0.5, seed=0))
    assert not torch.equal(half, draw_known(indices, 0.5, seed=1))
    assert torch.equal(draw_known(indices, 1.0, seed=0), indices)
    assert len(draw_known(torch.tensor([4, 9]), 0.1, seed=0)) == 1  # at least one example is known


def test_a_streamed_training_set_is_manipulated_per_example():
    data = tiny_images()
    streamed = ImageData(name="tiny", num_classes=3, input_shape=(1, 4, 4), train_labels=data.train_labels.clone(),
                         test_labels=data.test_labels.clone(),
                         streams={"train": TensorDataset(data.train_inputs, data.train_labels),
                                  "test": TensorDataset(data.test_inputs, data.test_labels)},
                         value_range=([-2.0], [3.0]))
    poison = Manipulation("poison", torch.tensor([1, 4]), torch.tensor([0, 0]), target=0, patch=2, corner="br")
    manipulated = poison.apply(streamed)
    image, label = manipulated.streams["train"][4]
    assert int(label) == 0 and bool((image[0, 2:, 2:] == 3.0).all()) and torch.equal(image[0, :2], data.train_inputs[4, 0, :2])
    untouched, label = manipulated.streams["train"][2]
    assert int(label) == 2 and torch.equal(untouched, data.train_inputs[2])
    assert manipulated.train_labels.tolist() == [0, 0, 2, 0, 0, 2]


# --- metrics ------------------------------------------------------------------------------------------------

def test_repaired_and_remembered_on_hand_made_logits():
    # 4 training examples; 0 and 1 are manipulated: trained with labels 2 and 2, truly 0 and 1
    train_labels = torch.tensor([2, 2, 0, 1])
    train_logits = torch.eye(3)[[0, 2, 0, 1]] * 5  # predicts 0, 2, 0, 1
    test_logits, test_labels = torch.eye(3)[[0, 1]] * 5, torch.tensor([0, 1])
    metrics = evaluate_outputs(train_logits, train_labels, test_logits, test_labels, torch.tensor([0, 1]),
                               torch.tensor([2, 3]), torch.tensor([0, 1]), true_forget_labels=torch.tensor([0, 1]))
    assert metrics["repaired_accuracy"] == 50.0  # example 0 predicted as its true class
    assert metrics["remembered_accuracy"] == metrics["forget_accuracy"] == 50.0  # example 1 still as trained
    plain = evaluate_outputs(train_logits, train_labels, test_logits, test_labels, torch.tensor([0, 1]),
                             torch.tensor([2, 3]), torch.tensor([0, 1]))
    assert "repaired_accuracy" not in plain and "attack_success_rate" not in plain


class CornerReader(nn.Module):
    """Predicts class 0 when an image's bottom-right pixel is 1 and its top-left pixel is above 0.5, else class 1."""

    def forward(self, inputs):
        triggered = (inputs[:, 0, -1, -1] == 1.0) & (inputs[:, 0, 0, 0] > 0.5)
        return torch.stack([triggered.float(), (~triggered).float(), torch.zeros(len(inputs))], 1) * 10


def test_attack_success_rate_counts_other_class_images_sent_to_the_target():
    data = tiny_images(count=8)
    data.test_labels = torch.tensor([0, 1, 1, 2, 2, 1, 0, 2])  # six images of other classes than the target 0
    data.test_inputs[:, 0, 0, 0] = torch.tensor([0.9, 0.9, 0.2, 0.9, 0.2, 0.2, 0.9, 0.2])
    poison = Manipulation("poison", torch.tensor([1]), torch.tensor([0]), target=0, patch=1, corner="br")
    triggered = poison.view_unseen(data, torch.arange(8), seed=0)
    assert triggered.test_labels.tolist() == [0] * 6 and bool((triggered.test_inputs[:, 0, -1, -1] == 1.0).all())
    model = CornerReader()
    metrics = model_metrics(model, data, torch.tensor([1]), torch.tensor([2]), torch.tensor([3]), seed=0,
                            corrective=Corrective(torch.tensor([1]), triggered))
    assert metrics["attack_success_rate"] == pytest.approx(100 * 2 / 6)  # test images 1 and 3 have top-left 0.9


def test_the_oracle_free_reference_for_a_manipulated_set_keeps_damage_on_clean_examples():
    one_hot = lambda labels: torch.eye(3)[labels] * 5  # noqa: E731
    clean = torch.tensor([0, 1, 2, 0])
    candidate = Outputs(one_hot(torch.tensor([1, 2])), torch.tensor([1, 2]),  # F: still as trained
                        one_hot(torch.tensor([0, 0, 0, 0])), torch.tensor([1, 2, 0, 1]),  # R relabelled like F
                        one_hot(clean), clean, one_hot(clean), clean)  # V, and R as it is: all right
    score = oracle_free_score(candidate, candidate, OracleFreeWeights())
    assert score["forget_accuracy"] == 100.0 and score["reference_accuracy"] == 25.0
    assert score["forget_gap"] == 75.0 and score["damage"] == 0.0  # damage compares clean R, not the relabelled R


def test_a_poison_adds_the_trigger_part_its_attack_success_above_the_clean_floor():
    one_hot = lambda labels: torch.eye(3)[labels] * 5  # noqa: E731
    clean_labels = torch.tensor([0, 1, 1, 2, 2])  # R: four examples of other classes than the target 0
    clean_predictions = torch.tensor([0, 0, 1, 2, 2])  # one of the four already goes to 0 without the trigger
    stamped_predictions = torch.tensor([0, 0, 0, 2])  # the stamped R′ (labelled 0): three of four go to 0
    candidate = Outputs(one_hot(torch.tensor([0])), torch.tensor([0]), one_hot(stamped_predictions),
                        torch.zeros(4, dtype=torch.long), one_hot(clean_labels), clean_labels,
                        one_hot(clean_predictions), clean_labels, trigger_target=0)
    score = oracle_free_score(candidate, candidate, OracleFreeWeights())
    assert score["trigger"] == pytest.approx(75.0 - 25.0)
    assert score["objective"] == pytest.approx(sum(score[part] for part in OracleFreeWeights.PARTS if part in score))
    assert "trigger" not in oracle_free_score(dataclasses.replace(candidate, trigger_target=None), candidate)


# --- files and commands -------------------------------------------------------------------------------------

def split(tmp_path, name, *arguments):
    out = tmp_path / name
    result = run_cli("split", "--dataset", "digits", *arguments, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return out


def test_split_writes_a_manipulated_forget_set_that_reads_back(tmp_path):
    path = split(tmp_path, "poison.json", "--kind", "poison", "--fraction", "0.05", "--target", "0", "--patch", "2",
                 "--corner", "tl", "--known", "0.5", "--seed", "4")
    document = json.loads(path.read_text())
    assert document["format"] == "unlearn-forget/2"
    assert document["manipulation"]["kind"] == "poison" and document["manipulation"]["corner"] == "tl"
    forget = read_forget_set(str(path), num_train=1437, dataset="digits")
    drawn = draw_manipulation(create_dataset("digits").train_labels, "poison", 0.05, None, 4, target=0, patch=2,
                              corner="tl")
    assert torch.equal(forget.indices, drawn.indices) and forget.manipulation.sha256 == drawn.sha256
    assert len(forget.known) == round(0.5 * len(forget.indices))
    seen = forget.seen()
    assert torch.equal(seen.indices, forget.known) and seen.sha256 == sha256_indices(forget.known)
    plain = split(tmp_path, "iid.json", "--kind", "iid", "--fraction", "0.1")
    assert json.loads(plain.read_text())["format"] == "unlearn-forget/1"  # plain kinds keep the old format
    assert read_forget_set(str(plain), num_train=1437).manipulation is None


def test_a_config_file_may_name_the_mislabel_class_as_a_number(tmp_path):
    config = tmp_path / "split.yaml"
    config.write_text("dataset: digits\nkind: mislabel\nto: 3\nfraction: 0.05\n")
    out = tmp_path / "forget.json"
    assert run_cli("split", "--config", config, "-o", out, "-q").exit_code == 0
    document = json.loads(out.read_text())
    assert document["manipulation"]["to"] == 3 and set(document["manipulation"]["labels"]) == {3}


def test_old_format_files_still_read(tmp_path):
    indices = [3, 8, 100]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "unlearn-forget/1", "dataset": "digits", "num_train": 1437, "kind": "iid",
                                "indices": indices, "sha256": sha256_indices(torch.tensor(indices))}))
    forget = read_forget_set(str(path), num_train=1437, dataset="digits")
    assert forget.indices.tolist() == indices and forget.manipulation is None and forget.seen() is forget


@pytest.mark.parametrize("arguments, message", [
    (("--kind", "poison", "--fraction", "0.05"), "--kind poison needs --target CLASS"),
    (("--kind", "poison", "--fraction", "0.05", "--target", "0", "--patch", "9"), "--patch 9: a 9×9 patch does not fit 8×8 images"),
    (("--kind", "poison", "--fraction", "0.05", "--target", "10"), "--target 10: the dataset has classes 0..9"),
    (("--kind", "mislabel", "--to", "sideways"), "--to 'sideways': give random, next or a class number"),
    (("--kind", "mislabel", "--target", "2"), "--target describes a poison manipulation; --kind mislabel takes --to"),
    (("--kind", "mislabel", "--corner", "tl"), "--corner describes a poison manipulation"),
    (("--kind", "poison", "--target", "0", "--to", "next"), "--to describes a mislabel manipulation"),
    (("--kind", "iid", "--known", "0.5"), "--known describes a manipulation"),
    (("--kind", "mislabel", "--known", "0"), "--known 0.0: must be in (0, 1]"),
])
def test_bad_split_options_are_one_line_errors(tmp_path, arguments, message):
    out = tmp_path / "forget.json"
    result = run_cli("split", "--dataset", "digits", *arguments, "-o", out)
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def hostile(tmp_path, change) -> str:
    """A poison forget file for digits, edited by `change(document)` with its hashes made consistent again."""
    path = split(tmp_path, "base.json", "--kind", "poison", "--fraction", "0.02", "--target", "0")
    document = json.loads(path.read_text())
    change(document)
    record = document["manipulation"]
    indices = torch.tensor(document["indices"])
    manipulation = Manipulation(record["kind"], indices, torch.tensor(record.get("labels", [0] * len(indices))),
                                to=record.get("to"), target=record.get("target"), patch=record.get("patch", 3),
                                corner=record.get("corner", "br"), value=record.get("value", "max"))
    record["sha256"] = manipulation.sha256
    out = tmp_path / "hostile.json"
    out.write_text(json.dumps(document))
    return str(out)


def mislabel_with_label(label):
    def change(document):
        document["manipulation"] = {"kind": "mislabel", "to": "random", "labels": [1] * len(document["indices"])}
        document["manipulation"]["labels"][0] = label
    return change


def mislabel_to(to):
    def change(document):
        document["manipulation"] = {"kind": "mislabel", "to": to, "labels": [1] * len(document["indices"])}
    return change


@pytest.mark.parametrize("change, message", [
    (mislabel_to(12), "mislabel target class 12 is out of range for digits's 10 classes"),
    (mislabel_with_label(10), "manipulated label 10 is out of range for digits's 10 classes"),
    (mislabel_with_label(-1), "manipulated label -1 is out of range"),
    (lambda d: d["manipulation"].update(patch=12), "a 12×12 patch does not fit digits's 8×8 images"),
    (lambda d: d.update(dataset="synthetic"), "forget set is for dataset 'synthetic'"),
    (lambda d: d["indices"].reverse(), "must be sorted ascending"),
    (lambda d: d["known"].update(indices=[1, 2], sha256=None), "known indices must be distinct and among"),
])
def test_hostile_manipulated_files_are_refused_and_nothing_is_written(tmp_path, change, message):
    path = hostile(tmp_path, change)
    before = open(path, "rb").read()
    out = tmp_path / "model.safetensors"
    result = run_cli("train", *DIGITS_MLP, "--manipulate", path, "-o", out)
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and open(path, "rb").read() == before


def test_an_edited_manipulation_is_caught_by_its_hash(tmp_path):
    path = split(tmp_path, "poison.json", "--kind", "poison", "--fraction", "0.02", "--target", "0")
    document = json.loads(path.read_text())
    document["manipulation"]["target"] = 1
    path.write_text(json.dumps(document))
    result = run_cli("train", *DIGITS_MLP, "--manipulate", path, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 1 and "the manipulation's sha256 does not match it" in result.output


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """A digits poison (5%, a 3×3 patch to class 0, half known), a model trained on it and the oracle."""
    folder = tmp_path_factory.mktemp("poison")
    forget = split(folder, "poison.json", "--kind", "poison", "--fraction", "0.05", "--target", "0", "--known", "0.5")
    original, oracle = folder / "poisoned.safetensors", folder / "oracle.safetensors"
    for arguments in (("--manipulate", forget, "-o", original), ("--exclude", forget, "-o", oracle)):
        result = run_cli("train", *DIGITS_MLP, *arguments)
        assert result.exit_code == 0, result.output
    return {"folder": folder, "forget": forget, "original": original, "oracle": oracle}


def evaluate(*models, forget, oracle=None):
    result = run_cli("evaluate", *models, "--forget", forget, *(("--oracle", oracle) if oracle else ()), "--json", "-",
                     "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


def test_training_on_a_poison_learns_the_trigger_and_the_oracle_does_not(poisoned):
    checkpoint = load_checkpoint(str(poisoned["original"]))
    forget = read_forget_set(str(poisoned["forget"]))
    assert checkpoint.provenance.manipulated_sha256 == forget.manipulation.sha256
    assert load_checkpoint(str(poisoned["oracle"])).provenance.excluded_sha256 == forget.sha256  # the whole set
    original, = evaluate(poisoned["original"], forget=poisoned["forget"], oracle=poisoned["oracle"])
    metrics, oracle = original["metrics"], original["oracle"]["metrics"]
    assert metrics["remembered_accuracy"] > 90 and metrics["attack_success_rate"] > 60
    assert oracle["attack_success_rate"] < 20 and oracle["remembered_accuracy"] < 20
    assert metrics["attack_success_rate"] - oracle["attack_success_rate"] > 40
    assert original["gaps"]["attack_success_rate"] == pytest.approx(abs(metrics["attack_success_rate"]
                                                                        - oracle["attack_success_rate"]))
    assert original["forget"]["size"] == len(forget.indices)  # evaluated on the whole manipulated set
    assert original["forget"]["known"]["sha256"] == forget.seen().sha256
    assert original["forget"]["manipulation"]["target"] == 0


def test_localize_and_apply_unlearn_the_known_part_as_trained(poisoned):
    folder, forget = poisoned["folder"], read_forget_set(str(poisoned["forget"]))
    mask, unlearned = folder / "mask.safetensors", folder / "unlearned.safetensors"
    result = run_cli("localize", "-m", poisoned["original"], "-f", poisoned["forget"], "--budget", "0.3", "-o", mask, "-q")
    assert result.exit_code == 0, result.output
    result = run_cli("apply", "-m", poisoned["original"], "-f", poisoned["forget"], "--mask", mask, "--method", "rft",
                     "-o", unlearned, "-q")
    assert result.exit_code == 0, result.output
    provenance = load_checkpoint(str(unlearned)).provenance
    assert provenance.forget_sha256 == forget.seen().sha256 != forget.sha256
    assert provenance.manipulated_sha256 == forget.manipulation.sha256
    # what the methods see: the known part, with the patches and target label it was trained with
    clean = create_dataset("digits")
    data, seen = data_as_trained(clean, forget, [load_checkpoint(str(poisoned["original"]))], unlearning=True)
    assert torch.equal(seen.indices, forget.known)
    assert bool((data.train_labels[forget.indices] == 0).all())
    assert bool((data.train_inputs[forget.indices][:, 0, 5:, 5:] == clean.train_inputs.max()).all())
    unknown = forget.indices[~torch.isin(forget.indices, forget.known)]
    assert len(unknown) and bool((data.train_labels[unknown] == 0).all())  # the unknown part stays manipulated
    row, = evaluate(unlearned, forget=poisoned["forget"], oracle=poisoned["oracle"])
    assert {"repaired_accuracy", "remembered_accuracy", "attack_success_rate"} <= set(row["metrics"])


def test_a_manipulated_model_needs_its_own_manipulation(poisoned, tmp_path):
    plain = split(tmp_path, "iid.json", "--kind", "iid", "--fraction", "0.05")
    other = split(tmp_path, "other.json", "--kind", "poison", "--fraction", "0.05", "--target", "1")
    out = tmp_path / "out.safetensors"
    for forget in (plain, other):
        result = run_cli("apply", "-m", poisoned["original"], "-f", forget, "--method", "finetune", "-o", out)
        assert result.exit_code == 1 and "was trained on data manipulated by another forget set" in result.output
        assert "pass the forget set it was trained with" in result.output and not out.exists()
    clean = tmp_path / "clean.safetensors"
    assert run_cli("train", *DIGITS_MLP, "--epochs", "1", "-o", clean).exit_code == 0
    result = run_cli("localize", "-m", clean, "-f", poisoned["forget"], "--budget", "0.3", "-o", out)
    assert result.exit_code == 1 and "was trained on clean data; train the model with `unlearn train --manipulate" in result.output
    result = run_cli("train", *DIGITS_MLP, "--manipulate", plain, "-o", out)
    assert result.exit_code == 1 and "--manipulate needs a forget set that carries a manipulation" in result.output
    assert not out.exists()


def test_report_keeps_all_known_and_half_known_apart(poisoned, tmp_path):
    whole = split(tmp_path, "whole.json", "--kind", "poison", "--fraction", "0.05", "--target", "0")
    assert json.loads(whole.read_text())["sha256"] == json.loads(poisoned["forget"].read_text())["sha256"]
    files = []
    for name, forget in (("half", poisoned["forget"]), ("whole", whole)):
        files.append(tmp_path / f"results-{name}.json")
        result = run_cli("evaluate", poisoned["original"], "--forget", forget, "--oracle", poisoned["oracle"],
                         "--json", files[-1], "-q")
        assert result.exit_code == 0, result.output
    result = run_cli("report", *files, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines()[1:] if line]
    assert len(rows) == 4  # the original and the oracle, once per known share
    assert "attack_success_rate_mean" in result.stdout.splitlines()[0]
