"""Memorization: the reference estimate and its terciles on hand-made numbers, the proxy `train` records (exactly, at
one step), `split --kind memorization`, reference-estimate files, and `audit --memorization` on small pools."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli
from presets import mlp_flags
from test_audit_cli import _audit, pools  # noqa: F401  (the audit's pools, reused)
from test_checkpoint import rewrite
from unlearn_cli.data import create_dataset
from unlearn_cli.data.splits import draw_from_tercile, terciles
from unlearn_cli.engine import ConfidenceRecord, LoopSettings, seed_everything, train_classifier
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.memorization import (label_probability, memorization_estimate, memorization_proxy,
                                               rank_correlation, split_half_reliability)
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.memorization import memorization_json, read_memorization_file
from unlearn_cli.models import create_model
from unlearn_cli.stacked import train_stacked

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fashion-mnist" / "memorization.py"
TINY = mlp_flags(width=16, epochs=3)


# --- the estimate, its terciles, rank correlations: hand-made numbers -------------------------------------------

def test_the_estimate_on_a_hand_made_pool():
    values = torch.tensor([[0.9, 0.8, 0.5, 1.0],
                           [0.7, 0.2, 0.5, 1.0],
                           [0.1, 0.6, 0.5, 1.0],
                           [0.3, 0.4, 0.5, 1.0]], dtype=torch.float64)
    membership = torch.tensor([[True, True, False, True],
                               [True, False, False, True],
                               [False, True, False, True],
                               [False, False, False, True]])
    estimate = memorization_estimate(values, membership)
    # example 0: in models 0, 1 (0.9, 0.7: 0.8), out 2, 3 (0.1, 0.3: 0.2) -> 0.6; example 1: (0.8 + 0.6)/2 − (0.2 +
    # 0.4)/2 = 0.4; example 2: no model trained on it, example 3: every model did -> NaN
    assert estimate[:2].tolist() == pytest.approx([0.6, 0.4], abs=1e-12)
    assert torch.isnan(estimate[2:]).all()
    correct = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1]], dtype=torch.float64)
    # example 0: 1 − 0 = 1; example 1: in models 0, 2 (1, 0), out 1, 3 (0, 1): 0
    assert memorization_estimate(correct, membership)[:2].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="must both be"):
        memorization_estimate(values, membership[:, :3])


def test_label_probability_and_the_proxy():
    logits = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]])
    assert label_probability(logits, torch.tensor([1, 0])).tolist() == pytest.approx([0.5, 0.75])
    proxy = memorization_proxy(torch.tensor([0.25, float("nan"), 1.0]))
    assert proxy[0] == 0.75 and torch.isnan(proxy[1]) and proxy[2] == 0.0


def test_terciles_rank_ties_by_index_and_give_the_larger_terciles_first():
    scores = torch.tensor([0.5, 0.1, float("nan"), 0.5, 0.9, 0.5, 0.2])
    # scored 6: ascending 1 (0.1), 6 (0.2), 0, 3, 5 (0.5, by index), 4 (0.9); rank k -> ⌊3k / 6⌋
    assert terciles(scores).tolist() == [1, 0, -1, 1, 2, 2, 0]
    assert terciles(torch.tensor([3.0, 1.0, 2.0, 0.0])).tolist() == [2, 0, 1, 0]  # n = 4: sizes 2, 1, 1
    for n in range(1, 11):
        sizes = torch.bincount(terciles(torch.rand(n, generator=torch.Generator().manual_seed(n))), minlength=3)
        assert sizes.tolist() == [len(part) for part in np.array_split(np.arange(n), 3)], n
    assert terciles(torch.full((3,), float("nan"))).tolist() == [-1, -1, -1]


def test_a_tercile_draw_takes_only_that_tercile():
    scores = torch.arange(30, dtype=torch.float64).flip(0)  # example i scores 29 − i: the high tercile is 0…9
    drawn = draw_from_tercile(scores, "high", fraction=0.2, seed=3)
    assert len(drawn) == 6 and set(drawn.tolist()) <= set(range(10)) and drawn.tolist() == sorted(drawn.tolist())
    assert draw_from_tercile(scores, "high", 0.2, seed=3).tolist() == drawn.tolist()
    assert set(draw_from_tercile(scores, "low", 1 / 3, seed=0).tolist()) == set(range(20, 30))
    with pytest.raises(UserError, match="asks for 12 examples but the mid tercile holds only 10"):
        draw_from_tercile(scores, "mid", 0.4, seed=0)
    with pytest.raises(UserError, match="--level 'top': choose one of low, mid, high"):
        draw_from_tercile(scores, "top", 0.1, seed=0)


def test_rank_correlation_and_split_half_reliability():
    # d = (0, 0, 1, −1): 1 − 6 · 2 / (4 · 15) = 0.8; the NaN pairs are left out
    rho, count = rank_correlation([1, 2, 3, 4, np.nan, 5], [10, 20, 40, 30, 50, np.nan])
    assert (rho, count) == (pytest.approx(0.8), 4)
    assert np.isnan(rank_correlation([1, 2], [1, 2])[0]) and np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])[0])
    membership = torch.tensor([[True, False, True], [False, True, False], [False, True, False], [True, False, True]])
    values = membership.double() * torch.tensor([0.9, 0.5, 0.1]) + 0.05  # mem 0.9, 0.5, 0.1 on either half
    reliability = split_half_reliability(values, membership)
    assert reliability["halves"] == pytest.approx(1.0) and reliability["spearman_brown"] == pytest.approx(1.0)


# --- the proxy `train` records ---------------------------------------------------------------------------------

def test_one_step_records_the_initial_models_confidence_on_the_first_batch(tmp_path):
    out = tmp_path / "m.safetensors"
    assert run_cli("train", *mlp_flags(width=16), "--max-steps", "1", "--batch-size", "64", "--seed", "5",
                   "-o", out).exit_code == 0
    recorded = load_checkpoint(str(out)).training_confidence
    data = create_dataset("digits")
    seed_everything(5)
    model = create_model("mlp", 10, data.input_shape, width=16)
    inputs, labels, examples = next(data.batches("train", batch_size=64, shuffle=True, seed=5, with_examples=True))
    with torch.no_grad():
        expected = label_probability(model(inputs), labels).float()
    assert recorded.shape == (data.num_train,) and recorded.dtype == torch.float32
    assert torch.equal(torch.nonzero(~recorded.isnan()).flatten(), examples.sort().values)  # only that batch
    assert torch.allclose(recorded[examples], expected, atol=1e-6)


def test_the_record_of_a_pool_stacked_is_each_models_own():
    data = create_dataset("digits", train_subset=256)
    data.train_inputs, data.test_inputs = data.train_inputs.double(), data.test_inputs.double()
    settings, indices = LoopSettings(epochs=2, lr=0.1), torch.arange(0, 256, 2)

    def build(seed):
        seed_everything(seed)
        return create_model("mlp", 10, data.input_shape, width=16).double()

    alone = []
    for seed in (3, 5):
        record = ConfidenceRecord(1, 256)
        train_classifier(build(seed), data, indices, settings, 32, seed, torch.device("cpu"), record=record)
        alone.append(record.means()[0])
    record = ConfidenceRecord(2, 256)
    train_stacked([build(3), build(5)], data, indices, settings, 32, [3, 5], torch.device("cpu"), record=record)
    stacked = record.means()
    for position in range(2):
        assert torch.isnan(stacked[position, 1::2]).all()  # the examples left out
        assert torch.allclose(stacked[position, ::2], alone[position][::2], atol=1e-6)
    assert not torch.allclose(stacked[0, ::2], stacked[1, ::2])


def test_the_record_survives_info_and_marks_what_was_left_out(tiny_run):
    forget = json.loads(Path(tiny_run["forget"]).read_text())["indices"]
    oracle = load_checkpoint(str(tiny_run["oracle"])).training_confidence
    assert torch.nonzero(oracle.isnan()).flatten().tolist() == forget
    result = run_cli("info", tiny_run["oracle"], "--json", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["training_confidence"]["examples"] == 1437
    assert document["training_confidence"]["trained_on"] == 1437 - len(forget)
    assert document["config"]["record_memorization"] is True


def test_a_damaged_record_is_a_one_line_error(tiny_run, tmp_path):
    state = load_file(str(tiny_run["original"]))
    for name, record, message in (
            ("range", state["training_confidence"] + 2, "holds values outside [0, 1]"),
            ("dtype", state["training_confidence"].double(), "must be float32 of one dimension"),
            ("shape", state["training_confidence"].reshape(-1, 1), "must be float32 of one dimension")):
        path = tmp_path / f"{name}.safetensors"
        rewrite(tiny_run["original"], path, {**state, "training_confidence": record})
        result = run_cli("info", path)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr, name


# --- split --kind memorization ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def proxies(tmp_path_factory):
    """A digits MLP with the proxy, one without, one on a subset of digits."""
    folder = tmp_path_factory.mktemp("proxies")
    for name, extra in (("proxy", ()), ("bare", ("--no-record-memorization",)),
                        ("subset", ("--dataset-option", "train_subset=500"))):
        result = run_cli("train", *TINY, *extra, "-o", folder / f"{name}.safetensors")
        assert result.exit_code == 0, result.output
    return folder


def test_split_draws_only_from_the_requested_tercile(proxies, tmp_path):
    model = proxies / "proxy.safetensors"
    levels = terciles(memorization_proxy(load_checkpoint(str(model)).training_confidence))
    for level, name in enumerate(("low", "mid", "high")):
        out = tmp_path / f"{name}.json"
        result = run_cli("split", "--dataset", "digits", "--kind", "memorization", "--level", name, "--model", model,
                         "--fraction", "0.1", "--seed", "4", "-q", "-o", out)
        assert result.exit_code == 0, result.output
        document = json.loads(out.read_text())
        assert len(document["indices"]) == round(0.1 * 1437)
        assert set(levels[document["indices"]].tolist()) == {level}
        assert document["kind"] == "memorization" and document["memorization"]["level"] == name
        assert document["memorization"]["sha256"] == load_checkpoint(str(model)).sha256
        assert document["memorization"]["estimate"] == "proxy"


def test_tune_draws_its_validation_sets_from_the_same_tercile_and_refuses_a_moved_source(proxies, tmp_path):
    model = tmp_path / "source.safetensors"
    model.write_bytes((proxies / "proxy.safetensors").read_bytes())
    levels = terciles(memorization_proxy(load_checkpoint(str(model)).training_confidence))
    forget = tmp_path / "high.json"
    assert run_cli("split", "--dataset", "digits", "--kind", "memorization", "--level", "high", "--model", model,
                   "--fraction", "0.05", "-q", "-o", forget).exit_code == 0
    tune = ("tune", "-m", proxies / "proxy.safetensors", "-f", forget, "--method", "finetune", "--grid", "lr=0.01", "--grid", "epochs=1",
            "--max-cost", "1", "-q")
    result = run_cli(*tune, "-o", tmp_path / "best.yaml")
    assert result.exit_code == 0, result.output
    sets = yaml.safe_load((tmp_path / "best.yaml").read_text())["tune"]["validation_sets"]
    assert [entry["seed"] for entry in sets] == [0, 1, 2] and len({entry["forget_sha256"] for entry in sets}) == 3
    for entry in sets[1:]:  # each redrawn set is the split's own draw with that seed: the high tercile only
        drawn = draw_from_tercile(memorization_proxy(load_checkpoint(str(model)).training_confidence), "high", 0.05,
                                  entry["seed"])
        assert set(levels[drawn].tolist()) == {2}
    model.rename(tmp_path / "moved.safetensors")
    result = run_cli(*tune, "-o", tmp_path / "never.yaml")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert f"was drawn by the memorization of {model}, which is not there" in result.stderr
    assert "pass --validation-sets 1" in result.stderr and not (tmp_path / "never.yaml").exists()


@pytest.mark.parametrize("arguments, message", [
    (("--kind", "memorization", "--level", "top", "--model", "{proxy}"), "--level 'top': --kind memorization draws "
                                                                         "from one tercile; choose --level low|mid|high"),
    (("--kind", "memorization", "--level", "high"), "--kind memorization needs --model"),
    (("--kind", "memorization", "--level", "high", "--model", "{bare}"), "records no training-time confidence"),
    (("--kind", "memorization", "--level", "high", "--model", "{subset}"),
     'scores the training set of digits {"train_subset": 500}, not of digits'),
    (("--kind", "memorization", "--level", "high", "--model", "{proxy}", "--dataset-option", "train_subset=500"),
     'scores the training set of digits, not of digits {"train_subset": 500}'),
    (("--kind", "memorization", "--level", "low", "--model", "{proxy}", "--fraction", "0.5"),
     "asks for 718 examples but the low tercile holds only 479"),
    (("--kind", "memorization", "--level", "low", "--model", "{proxy}", "--classes", "2"), "draws from the examples of "
                                                                                          "every class"),
    (("--level", "high", "--model", "{proxy}"), "--level describes a memorization split; it needs --kind memorization"),
])
def test_split_refusals_are_one_line_and_write_nothing(proxies, tmp_path, arguments, message):
    before = {path.name: path.read_bytes() for path in proxies.iterdir()}
    out = tmp_path / "forget.json"
    result = run_cli("split", "--dataset", "digits", *[a.format(**{p.stem: p for p in proxies.iterdir()})
                                                       for a in arguments], "-o", out)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not out.exists()
    assert {path.name: path.read_bytes() for path in proxies.iterdir()} == before


# --- reference-estimate files ----------------------------------------------------------------------------------

def reference_file(path, models, num_train=1437, dataset_kwargs=None):
    estimate = torch.linspace(-0.2, 0.9, num_train, dtype=torch.float64)
    estimate[0] = float("nan")
    path.write_bytes(memorization_json(estimate, estimate.clamp(min=0), torch.full((num_train,), 2),
                                       dataset="digits", dataset_kwargs=dataset_kwargs or {},
                                       models=[{"sha256": sha, "seed": 0, "excluded_sha256": None} for sha in models]))
    return estimate


def test_a_reference_file_reads_back_and_its_damage_is_refused(tmp_path):
    path = tmp_path / "reference.json"
    estimate = reference_file(path, ["ab" * 32])
    reference = read_memorization_file(str(path))
    assert torch.equal(reference.memorization.isnan(), estimate.isnan())
    assert torch.allclose(reference.memorization[1:], estimate[1:]) and reference.num_train == 1437
    document = json.loads(path.read_text())
    for change, message in ((lambda d: d["memorization"].pop(), "'memorization' must be a list of 1437 values"),
                            (lambda d: d["memorization_correct"].__setitem__(3, 7), "neither null nor a number in [-1, 1]"),
                            (lambda d: d.__setitem__("format", "unlearn-forget/1"), "not a reference-estimate file"),
                            (lambda d: d["models"][0].pop("sha256"), "'models' must be a non-empty list")):
        damaged = json.loads(json.dumps(document))
        change(damaged)
        (tmp_path / "damaged.json").write_text(json.dumps(damaged))
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
            read_memorization_file(str(tmp_path / "damaged.json"))


def test_split_draws_from_a_reference_files_terciles(tmp_path):
    estimate = reference_file(tmp_path / "reference.json", ["ab" * 32])
    out = tmp_path / "forget.json"
    result = run_cli("split", "--dataset", "digits", "--kind", "memorization", "--level", "high", "--model",
                     tmp_path / "reference.json", "--fraction", "0.05", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    indices = json.loads(out.read_text())["indices"]
    assert set(terciles(estimate)[indices].tolist()) == {2} and min(indices) >= 1437 - 478  # ascending: the top 478


# --- audit --memorization --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def audited(pools, tmp_path_factory):  # noqa: F811
    """The audit of the finetuned pool with the terciles of an original no pool holds (seed 9)."""
    folder = tmp_path_factory.mktemp("audited")
    proxy = folder / "proxy.safetensors"
    assert run_cli("train", *TINY, "--seed", "9", "-o", proxy).exit_code == 0
    result = _audit(pools, "--memorization", proxy, "--json", folder / "audit.json", "--per-example",
                    folder / "audit.csv", "-q")
    assert result.exit_code == 0, result.output
    return {"proxy": proxy, "document": json.loads((folder / "audit.json").read_text()),
            "rows": list(csv.DictReader((folder / "audit.csv").open()))}


def test_audit_breaks_the_forget_set_down_by_tercile(audited):
    document, examples = audited["document"], audited["rows"]
    proxy = memorization_proxy(load_checkpoint(str(audited["proxy"])).training_confidence)
    levels = terciles(proxy)
    assert [row["tercile"] for row in examples] == [("low", "mid", "high")[levels[int(row["index"])]] for row in examples]
    block = document["memorization"]
    assert block["sha256"] == load_checkpoint(str(audited["proxy"])).sha256 and block["unscored"] == 0
    rows = {(row["pool"], row["examples"]): row for row in document["rows"]}
    main = rows["unlearned", "forget"]
    total = 0
    for name in ("low", "mid", "high"):
        mine = [row for row in examples if row["tercile"] == name]
        assert block["terciles"][name]["examples"] == len(mine)
        if not mine:
            continue
        total += len(mine)
        row = rows["unlearned", f"forget:{name}"]
        assert row["name"] == f"unlearned vs retrained (forget, {name} memorization)"
        # the same per-example values: the tercile's forget score is the mean of its examples' points
        assert row["forget_score"] == pytest.approx(np.mean([float(r["points"]) for r in mine]), abs=1e-5)
        assert row["attack_accuracy"] == pytest.approx(np.mean([float(r["attack_accuracy"]) for r in mine]), abs=1e-5)
        low, high = row["intervals"]["forget_score"]
        assert low <= row["forget_score"] <= high
        assert row["accuracy"]["first"]["retain"] == main["accuracy"]["first"]["retain"]
        assert ("original", f"forget:{name}") in rows and ("half", f"forget:{name}") in rows
        influence = np.mean([float(r["influence"]) for r in mine])
        assert block["terciles"][name]["influence"] == pytest.approx(influence, abs=1e-4)
    assert total == document["forget"]["size"]
    # the terciles' forget accuracies average, weighted by their sizes, to the forget set's
    weighted = sum(block["terciles"][name]["examples"] * rows["unlearned", f"forget:{name}"]["accuracy"]["first"]["forget"]
                   for name in ("low", "mid", "high") if block["terciles"][name]["examples"])
    assert weighted / total == pytest.approx(main["accuracy"]["first"]["forget"])


def test_report_renders_the_tercile_rows(audited, tmp_path):
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(audited["document"]))
    result = run_cli("report", path, "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("| iid:")]
    examples = [line.split(" | ")[2] for line in lines]
    present = [f"forget:{name}" for name in ("low", "mid", "high") if audited["document"]["memorization"]["terciles"][name]["examples"]]
    # after the forget set's rows, before the retain sample's: one row per pool and tercile
    assert examples == ["forget"] * 3 + [part for part in present for _ in range(3)] + ["retain"] * 2 + ["test"] * 2


@pytest.mark.parametrize("source, message", [
    ("oracle-0.safetensors", "its proxy comes from {pools}/oracle-0.safetensors, a model of --retrained"),
    ("original-2.safetensors", "its proxy comes from {pools}/original-2.safetensors, a model of --original"),
    ("reference", "its reference comes from {pools}/finetune-1.safetensors, a model of --unlearned"),
])
def test_audit_refuses_terciles_from_the_models_it_scores(pools, tmp_path, source, message):  # noqa: F811
    if source == "reference":
        path = tmp_path / "reference.json"
        reference_file(path, [load_checkpoint(str(pools / "finetune-1.safetensors")).sha256])
    else:
        path = pools / source
    out = tmp_path / "audit.json"
    result = _audit(pools, "--memorization", path, "--json", out)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert message.format(pools=pools) in result.stderr and "(cross-fit)" in result.stderr
    assert not out.exists()


def test_audit_refuses_terciles_from_a_parent_of_the_unlearned_models(pools, tmp_path):  # noqa: F811
    result = _audit(pools, "--memorization", pools / "original-1.safetensors", "--json", tmp_path / "a.json",
                    original=None)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "the model finetune-1.safetensors of --unlearned was unlearned from" in result.stderr.replace(str(pools) + "/", "")


# --- the recipe ------------------------------------------------------------------------------------------------

def test_the_recipe_script_estimates_and_ranks_on_a_tiny_pool(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for k in range(4):
        for arguments in (("split", "--dataset", "digits", "--fraction", "0.5", "--seed", k, "-q",
                           "-o", work / f"left-out-{k}.json"),
                          ("train", *TINY, "--exclude", work / f"left-out-{k}.json", "--seed", k,
                           "-o", work / f"half-{k}.safetensors")):
            assert run_cli(*arguments).exit_code == 0
    proxies = [work / f"proxy-s{seed}.safetensors" for seed in (100, 101)]
    for seed, path in zip((100, 101), proxies):
        assert run_cli("train", *TINY, "--seed", seed, "-o", path).exit_code == 0
    script = importlib.util.spec_from_file_location("memorization_recipe", EXAMPLE)
    recipe = importlib.util.module_from_spec(script)
    script.loader.exec_module(recipe)
    monkeypatch.setattr(sys, "argv", ["memorization.py", "--work", str(work), "--models", "4", "--proxies",
                                      *map(str, proxies), "--results", str(tmp_path / "results")])
    recipe.main()
    report = (tmp_path / "results" / "memorization.md").read_text()
    assert "| proxy (seed 100) vs reference |" in report and "| proxy tercile | examples |" in report
    reference = read_memorization_file(str(tmp_path / "results" / "memorization" / "reference.json"))
    assert len(reference.models) == 4 and reference.members.max() <= 4
    membership = torch.stack([torch.ones(1437, dtype=torch.bool).index_fill(
        0, torch.tensor(json.loads((work / f"left-out-{k}.json").read_text())["indices"]), False) for k in range(4)])
    assert torch.equal(reference.members, membership.sum(0))
    rows = list(csv.DictReader((tmp_path / "results" / "memorization" / "memorization.csv").open()))
    assert len(rows) == 1437 and rows[5]["members"] == str(int(membership[:, 5].sum()))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_memorization_trains_each_model_without_its_half(tmp_path):
    dry_run = subprocess.run(["make", "-n", "-C", str(EXAMPLE.parent), "memorization", f"WORK={tmp_path}",
                              f"RESULTS={tmp_path}/results", "MEMORIZATION_MODELS=3", "UNLEARN=unlearn",
                              f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=60,
                             env={key: value for key, value in os.environ.items() if not key.startswith("MAKE")})
    assert dry_run.returncode == 0, dry_run.stderr[-2000:]
    commands = " ".join(dry_run.stdout.replace("\\\n", " ").split())  # each command on one line
    folder = tmp_path / "memorization"
    for k in range(3):
        assert (f"unlearn split --config configs/full/split-iid.yaml --fraction 0.5 --seed {k} --quiet "
                f"-o {folder}/left-out-{k}.json") in commands
        assert (f"unlearn train --config configs/full/train.yaml --exclude {folder}/left-out-{k}.json --seed {k}"
                in commands)
    assert "half-3.safetensors" not in commands
    for seed in (1000, 1001):
        assert f"--seed {seed} --device auto --quiet -o {folder}/proxy-s{seed}.safetensors" in commands
    assert (f"memorization.py --work {folder} --models 3 --proxies {folder}/proxy-s1000.safetensors "
            f"{folder}/proxy-s1001.safetensors --results {tmp_path}/results") in commands
