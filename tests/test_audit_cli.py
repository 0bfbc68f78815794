"""`unlearn audit` end to end on tiny digits pools: outputs, order invariance, and every provenance refusal."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.io.safetensors_file import dump_safetensors
from unlearn_cli.data import create_dataset

TINY = mlp_flags(width=16, epochs=3)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """4 originals, 4 oracles without forget set A, 4 more (the ceiling), 4 finetuned and 4 retrained (`apply
    --method retrain`) from the originals; forget set B; a wider model."""
    folder = tmp_path_factory.mktemp("pools")
    steps = [
        ("split", "--dataset", "digits", "--fraction", "0.05", "-o", folder / "forget.json", "-q"),
        ("split", "--dataset", "digits", "--fraction", "0.05", "--seed", "1", "-o", folder / "other.json", "-q"),
        ("train", *TINY, "--seeds", "0-3", "-o", str(folder / "original-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "0-3", "--exclude", folder / "forget.json", "-o", str(folder / "oracle-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "4-7", "--exclude", folder / "forget.json", "-o", str(folder / "ceiling-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "0-1", "--exclude", folder / "other.json", "-o", str(folder / "wrong-{seed}.safetensors")),
        ("apply", "--seeds", "0-3", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "forget.json",
         "--method", "retrain", "--epochs", "1", "-q", "-o", str(folder / "retrain-{seed}.safetensors")),
        ("apply", "--seeds", "0-3", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "forget.json",
         "--method", "finetune", "--epochs", "1", "-q", "-o", str(folder / "finetune-{seed}.safetensors")),
        ("apply", "--seeds", "0-1", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "other.json",
         "--method", "finetune", "--epochs", "1", "-q", "-o", str(folder / "elsewhere-{seed}.safetensors")),
        ("train", *mlp_flags(width=24, epochs=1), "--exclude", folder / "forget.json", "-o", folder / "wide.safetensors"),
    ]
    for step in steps:
        result = run_cli(*step)
        assert result.exit_code == 0, result.output
    return folder


def _audit(folder, *extra, unlearned="finetune-*.safetensors", retrained="oracle-*.safetensors",
           original="original-*.safetensors"):
    arguments = ["audit", "--forget", folder / "forget.json", "--unlearned", str(folder / unlearned),
                 "--retrained", str(folder / retrained)]
    if original:
        arguments += ["--original", str(folder / original)]
    return run_cli(*arguments, *extra)


def test_audit_writes_json_csv_and_plot(pools, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "audit.json"
    result = _audit(pools, "--json", out, "--per-example", tmp_path / "a.csv", "--plot", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert "warning: 4 models in the smallest pool: ε is resolved only up to ⌈ln(4 − 1)⌉ = 2" in result.output
    assert "the retrained pool's accuracy, forget/retain/test: " in result.output
    document = json.loads(out.read_text())
    assert document["format"] == "unlearn-audit/1"
    names = [row["name"] for row in document["rows"]]
    assert names == ["unlearned vs retrained", "original vs retrained", "retrained ½ vs ½",
                     "unlearned vs retrained (retain sample)", "original vs retrained (retain sample)",
                     "unlearned vs retrained (test sample)", "original vs retrained (test sample)"]
    first = document["rows"][0]
    assert first["models"] == [4, 4] and first["resolution"] == 2
    assert first["buckets"] == [[0.0, 0.5, 1.0], [0.5, 1.0, 0.5], [1.0, 1.5, 0.25], [1.5, 2.0, 0.125]]
    assert 0 <= first["forget_score"] <= 1 and 0 <= first["attack_accuracy"] <= 1
    assert document["rows"][2]["models"] == [2, 2]  # the halves
    assert document["pools"]["unlearned"]["method"] == "finetune" and document["pools"]["original"]["size"] == 4
    forget_size = document["forget"]["size"]
    rows = list(csv.DictReader((tmp_path / "a.csv").open()))
    assert len(rows) == forget_size
    assert list(rows[0]) == ["index", "label", "class", "epsilon", "points", "attack_accuracy", "attack_auc",
                             "kl_gaussian", "kl_binned", "median_phi_unlearned", "median_phi_retrained",
                             "median_phi_original"]
    points = sum(float(row["points"]) for row in rows) / forget_size
    assert points == pytest.approx(first["forget_score"], abs=1e-5)  # the CSV's points average to the score
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert document["settings"]["control_size"] == forget_size
    # intervals (200 resamples by default) on every row, each holding its estimate; the excess on the forget rows
    assert document["settings"]["bootstrap"] == 200 and document["settings"]["ceiling"] == "retrained halves"
    for row in document["rows"]:
        for key, number in (("forget_score", row["forget_score"]), ("attack_accuracy", row["attack_accuracy"]),
                            ("attack_auc", row["attack_auc"]), ("kl_gaussian_mean", row["kl_gaussian"]["mean"])):
            low, high = row["intervals"][key]
            assert low <= number <= high, (row["name"], key)
    for row in document["rows"][:3]:
        for key in ("forget_score", "attack_accuracy", "attack_auc", "kl_gaussian_mean"):
            excess = row["excess"][key]
            assert excess["excess"] == pytest.approx(excess["forget"] - excess["matched"])
            assert excess["interval"][0] <= excess["excess"] <= excess["interval"][1]
        assert row["excess"]["forget_score"]["forget"] == row["forget_score"]
        assert row["excess"]["examples"] == document["settings"]["matched_size"] > 0
        assert 0 <= row["attack_normalized"]["accuracy"] <= 1
    assert all(row["excess"] is None for row in document["rows"][3:])
    assert "F-specific excess: the number on the forget set minus the same on a matched unseen sample" in result.output
    assert "warning: the ceiling row is the retrained pool's halves, 2 models a side" in result.output


def test_the_order_of_models_does_not_change_the_audit(pools, tmp_path):
    forward = tmp_path / "forward.json"
    assert _audit(pools, "--json", forward, "-q").exit_code == 0
    backward = tmp_path / "backward.json"
    arguments = ["audit", "--forget", pools / "forget.json", "-q", "--json", backward]
    for pool, stem in (("--unlearned", "finetune"), ("--retrained", "oracle"), ("--original", "original")):
        for seed in (3, 1, 2, 0):
            arguments += [pool, pools / f"{stem}-{seed}.safetensors"]
    assert run_cli(*arguments).exit_code == 0
    rows = [json.loads(path.read_text())["rows"] for path in (forward, backward)]
    for one, other in zip(*rows):
        for key in ("forget_score", "final_score", "attack_accuracy", "attack_auc", "kl_gaussian", "kl_binned",
                    "epsilon"):
            assert one[key] == pytest.approx(other[key], abs=1e-12), (one["name"], key)
        # each pool is put in one order (seed, file hash) before the bootstrap draws models by position
        for key in ("attack_normalized", "intervals", "excess"):
            assert one[key] == other[key], (one["name"], key)


def test_report_reads_audit_files(pools, tmp_path):
    out = tmp_path / "audit.json"
    assert _audit(pools, "--json", out, "-q").exit_code == 0
    result = run_cli("report", out, "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert "| forget set | pool | examples | models | forget score |" in result.stdout
    assert "| finetune | forget | 4 + 4 |" in result.stdout and "| retrained, one half | forget | 2 + 2 |" in result.stdout
    # beside a results file: both tables; a CSV takes one kind
    results = tmp_path / "results.json"
    evaluated = run_cli("evaluate", pools / "finetune-0.safetensors", "--forget", pools / "forget.json", "--oracle",
                        pools / "oracle-0.safetensors", "-q", "--json", results)
    assert evaluated.exit_code == 0, evaluated.output
    both = run_cli("report", results, out, "--format", "markdown")
    assert both.exit_code == 0, both.output
    assert "| forget set | strategy | method | budget | n |" in both.stdout and "| finetune | forget | 4 + 4 |" in both.stdout
    mixed_csv = run_cli("report", results, out, "--format", "csv")
    assert mixed_csv.exit_code == 1 and "takes results files or audit files, not both" in mixed_csv.output
    audit_csv = run_cli("report", out, "--format", "csv")
    assert audit_csv.exit_code == 0 and audit_csv.stdout.startswith("forget_set,pool,examples,models_pool,")
    # every number that has an interval shows it: [low, high] in the tables, _low and _high columns in the CSV
    document, (header, first, *_) = json.loads(out.read_text()), list(csv.reader(io.StringIO(audit_csv.stdout)))
    row = dict(zip(header, first))
    low, high = document["rows"][0]["intervals"]["forget_score"]
    assert (float(row["forget_score_low"]), float(row["forget_score_high"])) == (low, high)
    normalized = document["rows"][0]["normalized_score"]  # on the halves' scale here: may be undefined (None)
    assert row["normalized_score"] == ("" if normalized is None else repr(normalized["value"]))
    assert float(row["forget_score_excess"]) == document["rows"][0]["excess"]["forget_score"]["excess"]
    assert f"| {document['rows'][0]['forget_score']:.3f} [{low:.3f}, {high:.3f}] |" in result.stdout
    damaged = json.loads(out.read_text())
    del damaged["rows"][1]["attack_accuracy"]
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    refused = run_cli("report", tmp_path / "damaged.json")
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "damaged.json.rows[1].attack_accuracy is missing; the file is damaged, re-run `unlearn audit`" in refused.output


@pytest.mark.parametrize("case, message", [
    ({"retrained": "original-*.safetensors", "original": None},
     "was trained on the whole training set; --retrained takes models trained without exactly"),
    ({"retrained": "wrong-*.safetensors"}, "was trained without another forget set (excluded_sha256"),
    ({"unlearned": "oracle-[01].safetensors", "retrained": "oracle-[23].safetensors", "original": None},
     "oracle-0.safetensors: was trained without the forget set (train --exclude); it belongs in --retrained, not "
     "--unlearned"),
    ({"unlearned": "original-*.safetensors", "original": None}, "records no unlearning"),
    ({"unlearned": "elsewhere-*.safetensors"}, "was unlearned on another forget set (forget_sha256"),
    ({"original": "finetune-*.safetensors", "unlearned": "finetune-[01].safetensors"}, "is in both --unlearned and --original"),
    ({"original": "original-[01].safetensors"}, "which is not in --original"),
    ({"original": "wrong-*.safetensors"},
     "--original takes models trained on the whole training set, but this one was trained without a forget set"),
    ({"unlearned": "finetune-0.safetensors"}, "--unlearned: 1 model; a pool needs at least 2"),
    ({"unlearned": "nothing-*.safetensors"}, "--unlearned '"),
    ({"retrained": "oracle-[0-2].safetensors --retrained wide.safetensors"}, None),
])
def test_refusals(pools, tmp_path, case, message):
    out = tmp_path / "audit.json"
    if message is None:  # a model of another architecture in the retrained pool
        arguments = ["audit", "--forget", pools / "forget.json", "--unlearned", str(pools / "finetune-*.safetensors"),
                     "--retrained", str(pools / "oracle-[0-2].safetensors"), "--retrained", pools / "wide.safetensors",
                     "--json", out]
        result = run_cli(*arguments)
        message = "differs from"
    else:
        result = _audit(pools, "--json", out, **case)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert message in result.output
    assert not out.exists()


def test_refusals_of_the_command_line(pools, tmp_path):
    result = run_cli("audit", "--forget", pools / "forget.json", "--unlearned", "-", "--retrained",
                     str(pools / "oracle-*.safetensors"))
    assert result.exit_code == 1 and "--unlearned -: a pool is read from files, not stdin" in result.output
    twice = run_cli("audit", "--forget", pools / "forget.json", "--unlearned", pools / "finetune-0.safetensors",
                    "--unlearned", str(pools / "finetune-*.safetensors"), "--retrained", str(pools / "oracle-*.safetensors"))
    assert twice.exit_code == 1 and "is named twice" in twice.output
    onto_input = _audit(pools, "--json", pools / "forget.json")
    assert onto_input.exit_code == 1 and "would destroy the input" in onto_input.output
    same = _audit(pools, "--json", tmp_path / "x", "--per-example", tmp_path / "x")
    assert same.exit_code == 1 and "give each output its own path" in same.output
    missing = run_cli("audit", "--unlearned", str(pools / "finetune-*.safetensors"))
    assert missing.exit_code == 1 and "--forget is required" in missing.output


def test_report_reads_an_audit_file_written_before_the_intervals():
    # a committed audit of the Fashion-MNIST example, written before intervals, excess and the normalized attack
    old = Path(__file__).parent.parent / "examples" / "fashion-mnist" / "results" / "protocol-v2" / "audit" / "iid-del.json"
    assert "intervals" not in json.loads(old.read_text())["rows"][0]
    result = run_cli("report", old, "--format", "markdown")
    assert result.exit_code == 0, result.output
    # no interval, normalized score or excess in that file: shown as unknown
    assert "| iid:7c8217b3 | del + rft @ 0.9 | forget | 32 + 32 | 0.008 | — | — | 0.007 |" in result.stdout


def test_an_independent_ceiling_replaces_the_halves(pools, tmp_path):
    out = tmp_path / "audit.json"
    result = _audit(pools, "--ceiling", str(pools / "ceiling-*.safetensors"), "--json", out, "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert [row["name"] for row in document["rows"][:3]] == ["unlearned vs retrained", "original vs retrained",
                                                             "ceiling vs retrained"]
    ceiling = document["rows"][2]
    assert ceiling["pool"] == "ceiling" and ceiling["models"] == [4, 4] and ceiling["resolution"] == 2
    assert document["settings"]["ceiling"] == "independent pool" and document["pools"]["ceiling"]["size"] == 4
    assert "the ceiling row is the retrained pool's halves" not in result.output
    # --bootstrap 0: the numbers and the excess, no intervals
    assert ceiling["intervals"] is None and ceiling["excess"]["attack_accuracy"]["interval"] is None
    assert "no intervals (--bootstrap 0)" in result.output
    report = run_cli("report", out, "--format", "markdown")
    assert report.exit_code == 0 and "| independent oracles | forget | 4 + 4 |" in report.stdout
    # the unlearned pool's forget score on the scale from the originals (0) to the ceiling (1); these 1-epoch models
    # barely memorize, so the originals may already score above the ceiling: then there is no scale (None)
    unlearned, low, high = (row["forget_score"] for row in document["rows"][:3])
    expected = None if high <= low else {"value": pytest.approx((unlearned - low) / (high - low)), "interval": None}
    assert document["rows"][0]["normalized_score"] == expected
    assert all(row["normalized_score"] is None for row in document["rows"][1:])


RELEARN = ("--relearn", "--relearn-part", "0.5", "--relearn-batch-size", "8", "--relearn-steps", "3", "--relearn-lr",
           "0.05", "--relearn-lr", "0.5")


def test_relearn_pairs_each_pool_with_the_retrained_pool_model_by_model(pools, tmp_path):
    out = tmp_path / "audit.json"
    before = {path.name: path.read_bytes() for path in pools.iterdir()}
    result = _audit(pools, *RELEARN, "--ceiling", str(pools / "ceiling-*.safetensors"), "--bootstrap", "0",
                    "--json", out)
    assert result.exit_code == 0, result.output
    assert {path.name: path.read_bytes() for path in pools.iterdir()} == before  # models are relearned as copies
    assert "relearning: accuracy on the forget set's rest" in result.output
    document = json.loads(out.read_text())
    relearn = document["relearn"]
    assert {key: relearn[key] for key in ("part_size", "rest_size", "steps", "batch_size")} == {
        "part_size": 36, "rest_size": 36, "steps": 3, "batch_size": 8}
    assert set(relearn["curves"]) == {"unlearned", "retrained", "original", "ceiling"}
    retrained = {entry["lr"]: entry["models"] for entry in relearn["curves"]["retrained"]}
    for row in document["rows"]:
        if row["examples"] != "forget":
            assert row["relearn"] is None
            continue
        pool = {entry["lr"]: entry["models"] for entry in relearn["curves"][row["pool"]]}
        assert [entry["lr"] for entry in row["relearn"]] == [0.05, 0.5]
        for entry in row["relearn"]:
            rate = entry["lr"]
            assert all(len(curve) == 4 for curve in pool[rate])
            # model i against retrained model i, mean over steps 1…3, then the mean over the 4 pairs
            gaps = [sum(mine[step] - theirs[step] for step in (1, 2, 3)) / 3
                    for mine, theirs in zip(pool[rate], retrained[rate])]
            assert entry["pairs"] == 4 and entry["gap"] == pytest.approx(sum(gaps) / 4, abs=1e-9), row["name"]
            low, high = entry["interval"]
            assert low <= entry["gap"] <= high
    report = run_cli("report", out, "--format", "csv")
    assert report.exit_code == 0, report.output
    first = next(csv.DictReader(io.StringIO(report.stdout)))
    assert float(first["relearn_gap_lr0.5"]) == pytest.approx(document["rows"][0]["relearn"][1]["gap"])
    assert "relearn gap lr 0.05" in run_cli("report", out, "--format", "markdown").stdout


def test_relearn_refusals_write_nothing(pools, tmp_path):
    out = tmp_path / "audit.json"
    for extra, message in (
            (("--relearn", "--relearn-part", "1"), "--relearn-part 1 takes all 72 examples of the forget set"),
            (("--relearn",), "--relearn-part 0.1 of the forget set's 72 examples is 7, fewer than one batch"),
            (("--relearn", "--relearn-lr", "-1"), "--relearn-lr: -1.0 is out of range; it must be > 0")):
        result = _audit(pools, *extra, "--json", out)
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
        assert not out.exists()


def test_refusals_of_the_ceiling_and_the_bootstrap(pools, tmp_path):
    out = tmp_path / "audit.json"
    shutil.copy(pools / "oracle-0.safetensors", tmp_path / "copy-0.safetensors")  # another name, the same model
    with safe_open(str(pools / "oracle-0.safetensors"), "pt") as file:  # another model (its wall time), the same seed
        tensors, meta = {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata())
    (tmp_path / "same-seed.safetensors").write_bytes(dump_safetensors(tensors, {**meta, "wall_time_s": "1.0"}))
    cases = [
        (("--ceiling", str(pools / "ceiling-[4-6].safetensors")),
         "error: --ceiling: 3 models, --unlearned 4; the ceiling is scored on the audited pool's ε scale, so give it "
         "as many models as --unlearned\n"),
        (("--ceiling", str(pools / "ceiling-[4-6].safetensors"), "--ceiling", tmp_path / "same-seed.safetensors"),
         f"error: {tmp_path / 'same-seed.safetensors'}: trained with seed 0, as {pools / 'oracle-0.safetensors'} of "
         f"--retrained is; an independent ceiling needs other seeds (e.g. train it with --seeds 1000-1003)\n"),
        (("--ceiling", str(pools / "ceiling-[4-6].safetensors"), "--ceiling", tmp_path / "copy-0.safetensors"),
         f"error: {tmp_path / 'copy-0.safetensors'} and {pools / 'oracle-0.safetensors'} (--retrained and --ceiling) "
         f"hold the same model (sha256 "),
        (("--ceiling", str(pools / "wrong-*.safetensors")), "--ceiling takes models trained without exactly"),
        (("--ceiling", str(pools / "oracle-*.safetensors")), "is in both --retrained and --ceiling"),
        (("--bootstrap", "-1"), "error: --bootstrap -1: give 0 (no intervals) to 10000 resamples\n"),
        (("--bootstrap", "10001"), "error: --bootstrap 10001: give 0 (no intervals) to 10000 resamples\n"),
    ]
    for extra, message in cases:
        result = _audit(pools, *extra, "--json", out)
        assert result.exit_code == 1, extra
        assert result.output.count("\n") == 1 and message in result.output, result.output
        assert not out.exists()


def test_apply_retrain_outputs_are_audited_as_a_pipeline(pools, tmp_path):
    out = tmp_path / "audit.json"
    result = _audit(pools, "--json", out, "-q", "--bootstrap", "0", unlearned="retrain-*.safetensors")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["pools"]["unlearned"]["method"] == "retrain" and document["rows"][0]["models"] == [4, 4]


def test_the_per_example_csv_of_a_mislabeled_forget_set(tmp_path):
    # `split --kind mislabel --to next`: each forget example trained with label (y + 1) mod 10. The CSV's `label`
    # is that label, its `class` the true y.
    folder = tmp_path
    for step in (
        ("split", "--dataset", "digits", "--kind", "mislabel", "--to", "next", "--fraction", "0.03", "-o",
         folder / "mislabel.json", "-q"),
        ("train", *TINY, "--seeds", "0-1", "--manipulate", folder / "mislabel.json", "-o", str(folder / "original-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "0-1", "--exclude", folder / "mislabel.json", "-o", str(folder / "oracle-{seed}.safetensors")),
        ("apply", "--seeds", "0-1", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "mislabel.json",
         "--method", "finetune", "--epochs", "1", "-q", "-o", str(folder / "finetune-{seed}.safetensors")),
    ):
        result = run_cli(*step)
        assert result.exit_code == 0, result.output
    result = run_cli("audit", "--forget", folder / "mislabel.json", "--unlearned", str(folder / "finetune-*.safetensors"),
                     "--retrained", str(folder / "oracle-*.safetensors"), "--bootstrap", "0", "-q",
                     "--per-example", folder / "a.csv", "--json", folder / "a.json")
    assert result.exit_code == 0, result.output
    document = json.loads((folder / "a.json").read_text())  # the matched sample: unseen examples relabelled alike
    assert document["rows"][0]["excess"]["examples"] == document["settings"]["matched_size"] > 0
    rows = list(csv.DictReader((folder / "a.csv").open()))
    forget = json.loads((folder / "mislabel.json").read_text())
    true_labels = create_dataset("digits").train_labels
    assert [int(row["index"]) for row in rows] == sorted(forget["indices"])
    for row in rows:
        assert int(row["class"]) == int(true_labels[int(row["index"])])
        assert int(row["label"]) == (int(row["class"]) + 1) % 10
