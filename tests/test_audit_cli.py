"""`unlearn audit` end to end on tiny digits pools: outputs, order invariance, and every provenance refusal."""

import csv
import json

import pytest

from conftest import run_cli

TINY = ("--dataset", "digits", "--arch", "mlp", "--arch-option", "width=16", "--epochs", "3", "--quiet")


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """4 originals, 4 oracles without forget set A, 4 finetuned from the originals; forget set B; a wider model."""
    folder = tmp_path_factory.mktemp("pools")
    steps = [
        ("split", "--dataset", "digits", "--fraction", "0.05", "-o", folder / "forget.json", "-q"),
        ("split", "--dataset", "digits", "--fraction", "0.05", "--seed", "1", "-o", folder / "other.json", "-q"),
        ("train", *TINY, "--seeds", "0-3", "-o", str(folder / "original-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "0-3", "--exclude", folder / "forget.json", "-o", str(folder / "oracle-{seed}.safetensors")),
        ("train", *TINY, "--seeds", "0-1", "--exclude", folder / "other.json", "-o", str(folder / "wrong-{seed}.safetensors")),
        ("apply", "--seeds", "0-3", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "forget.json",
         "--method", "finetune", "--epochs", "1", "-q", "-o", str(folder / "finetune-{seed}.safetensors")),
        ("apply", "--seeds", "0-1", "-m", str(folder / "original-{seed}.safetensors"), "-f", folder / "other.json",
         "--method", "finetune", "--epochs", "1", "-q", "-o", str(folder / "elsewhere-{seed}.safetensors")),
        ("train", "--dataset", "digits", "--arch", "mlp", "--arch-option", "width=24", "--epochs", "1", "-q",
         "--exclude", folder / "forget.json", "-o", folder / "wide.safetensors"),
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
     "it belongs in --retrained, not --unlearned"),
    ({"unlearned": "original-*.safetensors", "original": None}, "records no unlearning"),
    ({"unlearned": "elsewhere-*.safetensors"}, "was unlearned on another forget set (forget_sha256"),
    ({"original": "finetune-*.safetensors", "unlearned": "finetune-[01].safetensors"}, "is in both --unlearned and --original"),
    ({"original": "original-[01].safetensors"}, "which is not in --original"),
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
