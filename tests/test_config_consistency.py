"""Configuration is the same everywhere: --config/--quiet on every command, YAML keys named like their flags,
required values from either, one-line errors naming the file and the key, typed `mask info --json`, and
`report`'s rule for a checkpoint evaluated more than once."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import inspect
import io
import json
import re
from pathlib import Path

import pytest
import typer

from conftest import run_cli
from unlearn_cli.cli import audit, calibrate, evaluate, info, localize, mask, report, split, train, tune
from unlearn_cli.cli.app import COMMANDS, app, load_command
from unlearn_cli.cli.apply import ApplyConfig
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import group_runs, merge_evaluations
from unlearn_cli.evaluate.metrics import metric_keys, oracle_gaps
from unlearn_cli.evaluate.results import result_record, results_document
from unlearn_cli.io.mask import typed_mask_metadata

ROOT = Path(__file__).resolve().parent.parent

# What the README's "The pipeline" section promises: --config and --quiet on every command but demo,
# --seed where random numbers are drawn, --device where a model runs.
WITHOUT_CONFIG = {"demo"}
SEEDED = {"split", "train", "localize", "apply", "evaluate", "mask random", "tune", "audit"}
ON_A_DEVICE = {"train", "localize", "apply", "calibrate", "evaluate", "tune", "audit"}

# command -> its config dataclass (None: the options are resolved elsewhere, see test_yaml_keys_are_flag_names)
CONFIGS = {
    "split": split.SplitConfig, "train": train.TrainConfig, "localize": localize.LocalizeConfig, "apply": ApplyConfig,
    "evaluate": evaluate.EvaluateConfig, "report": report.ReportConfig, "info": info.InfoConfig,
    "mask info": mask.MaskInfoConfig, "mask compare": mask.MaskCompareConfig, "mask random": mask.MaskRandomConfig,
    "tune": tune.TuneConfig, "audit": audit.AuditConfig, "calibrate": calibrate.CalibrateConfig,
}
# YAML keys whose flag has another name (docs/configuration.md, "Keys that differ from their flag")
FLAG_OF_KEY = {"arch_options": "--arch-option", "dataset_options": "--dataset-option", "params": "--param",
               "weights": "--weight"}
FILE_ONLY = {("train", "momentum"), ("train", "weight_decay")}  # keys without a flag


def commands() -> dict:
    """Every command of `unlearn` as built by typer, sub-commands of groups as 'group name'."""
    found = {}

    def walk(group, prefix: str):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group
                walk(command, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = command

    walk(typer.main.get_command(app), "")
    return found


def flags(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_the_command_list_is_the_readme_s():
    registered = {name for name, (_, attribute, *_) in COMMANDS.items() if attribute != "app"}
    groups = {name: getattr(importlib.import_module(f"unlearn_cli.cli.{module}"), attribute)
              for name, (module, attribute, *_) in COMMANDS.items() if attribute == "app"}
    registered |= {f"{name} {info.name or info.callback.__name__}" for name, group in groups.items()
                   for info in group.registered_commands}
    assert registered == set(commands())
    assert set(CONFIGS) == set(commands()) - WITHOUT_CONFIG
    readme = (ROOT / "README.md").read_text()
    for name in commands():
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_line_unlearn_help_lists_is_the_command_s_own(name):
    """`unlearn --help` lists each command from `COMMANDS` without importing it: its line must be the first
    paragraph of the command's own help."""
    own = inspect.cleandoc(load_command(name).help or "").split("\n\n")[0]
    assert COMMANDS[name][3] == own, name


@pytest.mark.parametrize("name", sorted(set(commands()) - WITHOUT_CONFIG))
def test_every_command_takes_config_and_quiet(name):
    options = flags(commands()[name])
    assert {"--config", "--quiet", "-q"} <= options, name
    assert ("--seed" in options) == (name in SEEDED), name
    assert ("--device" in options) == (name in ON_A_DEVICE), name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_yaml_keys_are_flag_names(name):
    options = flags(commands()[name])
    for field in dataclasses.fields(CONFIGS[name]):
        if (name, field.name) in FILE_ONLY:
            assert f"--{field.name.replace('_', '-')}" not in options
            continue
        flag = FLAG_OF_KEY.get(field.name, f"--{field.name.replace('_', '-')}")
        assert flag in options, f"{name}: YAML key {field.name!r} has no flag {flag}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_key_is_documented(name):
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = re.search(rf"^## [^\n]*`unlearn {name}`[^\n]*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"docs/configuration.md has no section for {name}"
    for field in dataclasses.fields(CONFIGS[name]):
        assert f"`{field.name}`" in section.group(1), f"{name}: {field.name}"
    assert "[docs/configuration.md](docs/configuration.md)" in (ROOT / "README.md").read_text()


# --- errors from a config file ------------------------------------------------------------------------------

UNKNOWN_KEY_CALLS = {
    "split": ["split", "-o", "{out}"], "train": ["train", "-o", "{out}"], "localize": ["localize", "-o", "{out}"],
    "apply": ["apply", "-o", "{out}"], "evaluate": ["evaluate", "model.safetensors"],
    "report": ["report", "results.json"], "info": ["info", "model.safetensors"],
    "mask info": ["mask", "info", "mask.safetensors"], "mask compare": ["mask", "compare", "a.safetensors", "b.safetensors"],
    "mask random": ["mask", "random", "-o", "{out}"], "tune": ["tune", "-o", "{out}"],
    "audit": ["audit", "--json", "{out}"], "calibrate": ["calibrate", "-o", "{out}"],
}


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(UNKNOWN_KEY_CALLS))
def test_unknown_key_is_one_line_naming_file_and_key(tmp_path, name):
    assert set(UNKNOWN_KEY_CALLS) == set(CONFIGS)
    config = tmp_path / "run.yaml"
    config.write_text("batch-sise: 64\n")
    out = tmp_path / "out.file"
    arguments = [part.format(out=out) for part in UNKNOWN_KEY_CALLS[name]]
    line = one_line_error(run_cli(*arguments, "--config", config))
    assert str(config) in line and "'batch_sise'" in line, line
    assert not out.exists()


def test_a_value_of_the_wrong_type_names_file_and_key(tmp_path):
    config = tmp_path / "report.yaml"
    config.write_text("format: pdf\n")
    line = one_line_error(run_cli("report", "results.json", "--config", config))
    assert str(config) in line and "'format'" in line and "pdf" in line
    config = tmp_path / "random.yaml"
    config.write_text("seed: three\n")
    line = one_line_error(run_cli("mask", "random", "-o", tmp_path / "m.safetensors", "--config", config))
    assert str(config) in line and "'seed'" in line


def test_an_empty_config_is_accepted_by_commands_without_keys(tiny_run, tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    result = run_cli("info", tiny_run["original"], "--config", config, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""


# --- localize: model and forget from the YAML ---------------------------------------------------------------


def test_localize_takes_model_and_forget_from_the_config(tiny_run, tmp_path):
    config = tmp_path / "del.yaml"
    config.write_text(f"model: {tiny_run['original']}\nforget: {tiny_run['forget']}\nstrategy: del\nbudget: 0.3\n")
    from_yaml, from_flags = tmp_path / "yaml.safetensors", tmp_path / "flags.safetensors"
    result = run_cli("localize", "--config", config, "-q", "-o", from_yaml)
    assert result.exit_code == 0, result.output
    result = run_cli("localize", "--model", tiny_run["original"], "--forget", tiny_run["forget"], "--strategy", "del",
                     "--budget", "0.3", "-q", "-o", from_flags)
    assert result.exit_code == 0, result.output
    assert from_yaml.read_bytes() == from_flags.read_bytes()  # the same resolved configuration, the same mask


def test_localize_flags_override_model_and_forget_of_the_config(tiny_run, tmp_path):
    config = tmp_path / "del.yaml"
    config.write_text(f"model: {tmp_path / 'missing.safetensors'}\nforget: {tiny_run['forget']}\nbudget: 0.3\n")
    output = tmp_path / "mask.safetensors"
    result = run_cli("localize", "--config", config, "--model", tiny_run["original"], "-q", "-o", output)
    assert result.exit_code == 0, result.output
    metadata = json.loads(run_cli("mask", "info", output, "--json", "-", "-q").stdout)["metadata"]
    assert metadata["config"]["model"] == str(tiny_run["original"])


@pytest.mark.parametrize("given, missing", [("forget", "model"), ("model", "forget")])
def test_localize_without_model_or_forget_names_flag_and_key(tiny_run, tmp_path, given, missing):
    config = tmp_path / "partial.yaml"
    config.write_text(f"{given}: {tiny_run['original' if given == 'model' else 'forget']}\nbudget: 0.3\n")
    output = tmp_path / "mask.safetensors"
    line = one_line_error(run_cli("localize", "--config", config, "-o", output))
    assert f"--{missing}" in line and f"`{missing}:`" in line and str(config) in line, line
    line = one_line_error(run_cli("localize", "--budget", "0.3", "-o", output))
    assert "--model" in line and "`model:`" in line, line
    assert not output.exists()


def test_localize_keeps_output_on_the_command_line(tiny_run, tmp_path):
    config = tmp_path / "del.yaml"
    config.write_text(f"model: {tiny_run['original']}\nforget: {tiny_run['forget']}\nbudget: 0.3\n"
                      f"output: {tmp_path / 'mask.safetensors'}\n")
    line = one_line_error(run_cli("localize", "--config", config, "-o", tmp_path / "other.safetensors"))
    assert "'output'" in line and str(config) in line
    assert run_cli("localize", "--config", config).exit_code == 2  # -o is a required flag: a usage error


# --- mask: typed JSON, --config, --quiet ---------------------------------------------------------------------


def test_mask_info_json_has_typed_values(tiny_run, tmp_path):
    reference, control = tmp_path / "del.safetensors", tmp_path / "control.safetensors"
    result = run_cli("localize", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--budget", "0.3", "-q",
                     "-o", reference)
    assert result.exit_code == 0, result.output
    config = tmp_path / "control.yaml"
    config.write_text(f"like: {reference}\nseed: 2\n")
    result = run_cli("mask", "random", "--config", config, "--seed", "4", "-o", control, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""

    document = json.loads(run_cli("mask", "info", reference, "--json", "-", "-q").stdout)
    meta = document["metadata"]
    assert meta["budget"] == 0.3 and isinstance(meta["selected_fraction"], float)
    assert all(type(meta[key]) is int for key in ("selected", "total", "seed"))
    assert (meta["selected"], meta["total"]) == (document["selected"], document["total"])
    assert meta["selected_fraction"] == pytest.approx(meta["selected"] / meta["total"])
    assert isinstance(meta["config"], dict) and meta["config"]["budget"] == 0.3
    assert meta["strategy"] == "del" and meta["format"] == "unlearn-mask/1"

    with open(control, "rb") as stream:
        result = run_cli("mask", "info", "-", "--json", "-", "-q", input=stream.read())
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)["metadata"]
    assert meta["budget"] is None  # no budget: null, not ""
    assert meta["seed"] == 4 and meta["config"] == {"like": str(reference), "seed": 4}  # the flag overrode the YAML


def test_typed_mask_metadata_refuses_a_damaged_value():
    meta = {"budget": "", "selected": "3", "total": "10", "selected_fraction": "0.3", "seed": "0",
            "config": '{"seed": 0}', "strategy": "random", "model_sha256": "ab"}
    assert typed_mask_metadata(meta) == {**meta, "budget": None, "selected": 3, "total": 10, "selected_fraction": 0.3,
                                         "seed": 0, "config": {"seed": 0}}
    with pytest.raises(UserError, match=r"m.safetensors: mask metadata 'total' is 'ten', not an integer"):
        typed_mask_metadata({**meta, "total": "ten"}, "m.safetensors")
    with pytest.raises(UserError, match="'config'"):
        typed_mask_metadata({**meta, "config": "[1"}, "m.safetensors")
    with pytest.raises(UserError, match="'budget'"):
        typed_mask_metadata({**meta, "budget": "nan"}, "m.safetensors")


# --- report: --config, --quiet and one record per evaluated checkpoint ----------------------------------------

FORGET = {"source": "forget.json", "sha256": "f" * 64, "kind": "noniid", "size": 72}
ORACLE_METRICS = {key: 50.0 for key in metric_keys()}


def record(*, forget_accuracy=90.0, oracle=True, fraction=None, oracle_sha="0" * 64, model_sha="1" * 64, seed=0):
    metrics = {key: 40.0 for key in metric_keys()}
    metrics["forget_accuracy"] = forget_accuracy
    oracle_block = {"source": "oracle.safetensors", "sha256": oracle_sha, "seed": 0, "excluded_sha256": FORGET["sha256"],
                    "matches_forget_set": True, "metrics": ORACLE_METRICS, "metrics_from": None} if oracle else None
    return result_record(
        model={"source": "del.safetensors", "sha256": model_sha, "arch": "mlp", "dataset": "digits", "num_classes": 10},
        method="rft", strategy="del", budget=0.3, seed=seed, forget=FORGET, metrics=metrics, oracle=oracle_block,
        comparison=oracle_gaps(metrics, ORACLE_METRICS) if oracle else None, allow_mismatch=False,
        parent={"source": "original.safetensors", "sha256": "2" * 64} if fraction is not None else None,
        fraction_changed=fraction, wall_time_s=1.5, mask_sha256=None,
        mia={"members": 10, "nonmembers": 10, "forget": 5, "seed": 0})


def write(path: Path, *records) -> Path:
    path.write_text(json.dumps(results_document(list(records))))
    return path


def report_csv(*arguments) -> dict[str, dict]:
    result = run_cli("report", *arguments, "--format", "csv")
    assert result.exit_code == 0, result.output
    return {row["method"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


@pytest.mark.parametrize("order", [1, -1])
def test_report_keeps_the_record_with_an_oracle(tmp_path, order):
    bare = write(tmp_path / "bare.json", record(oracle=False))
    full = write(tmp_path / "full.json", record())
    rows = report_csv(*[bare, full][::order])
    assert rows["rft"]["n"] == "1" and "oracle" in rows
    assert float(rows["rft"]["average_gap_mean"]) == pytest.approx((40.0 + 10.0 + 10.0) / 3)


@pytest.mark.parametrize("order", [1, -1])
def test_report_keeps_the_record_with_fraction_changed(tmp_path, order):
    without = write(tmp_path / "without.json", record())
    measured = write(tmp_path / "with.json", record(fraction=0.25))
    rows = report_csv(*[without, measured][::order])
    assert rows["rft"]["n"] == "1" and float(rows["rft"]["fraction_changed_mean"]) == 0.25


def test_report_combines_an_oracle_comparison_and_a_parent_measurement(tmp_path):
    first = write(tmp_path / "a.json", record(oracle=False, fraction=0.25))
    second = write(tmp_path / "b.json", record())
    rows = report_csv(first, second)
    assert rows["rft"]["n"] == "1" and float(rows["rft"]["fraction_changed_mean"]) == 0.25
    assert rows["rft"]["average_gap_mean"] != ""


@pytest.mark.parametrize("other, field", [
    (dict(forget_accuracy=80.0), "metrics.forget_accuracy (90.0 vs 80.0)"),
    (dict(oracle_sha="9" * 64), "oracle.sha256"),
    (dict(fraction=0.5), "fraction_changed (0.25 vs 0.5)"),
    (dict(seed=1), "seed (0 vs 1)"),
])
def test_report_refuses_disagreeing_evaluations_of_one_checkpoint(tmp_path, other, field):
    first = write(tmp_path / "a.json", record(fraction=0.25))
    second = write(tmp_path / "b.json", record(**{"fraction": 0.25, **other}))
    line = one_line_error(run_cli("report", first, second, "--format", "csv"))
    assert str(first) in line and str(second) in line and field in line, line
    assert "1" * 12 in line  # the model's hash


def test_report_merges_records_of_one_file_and_identical_copies(tmp_path):
    both = write(tmp_path / "both.json", record(oracle=False), record(), record(model_sha="3" * 64))
    rows = report_csv(both, both)
    assert rows["rft"]["n"] == "2"
    clash = write(tmp_path / "clash.json", record(), record(forget_accuracy=1.0))
    line = one_line_error(run_cli("report", clash))
    assert f"{clash} holds two evaluations" in line


def test_merge_evaluations_is_a_pure_choice():
    bare, full = record(oracle=False), record(fraction=0.1)
    merged = merge_evaluations([("a.json", bare), ("b.json", full)])
    assert merged == [full] and bare["oracle"] is None  # the inputs are not changed
    assert merge_evaluations([("a.json", full), ("b.json", bare)]) == [full]
    assert len(merge_evaluations([("a.json", bare), ("a.json", record(model_sha="4" * 64))])) == 2
    with pytest.raises(UserError, match=r"a.json and b.json both hold an evaluation .* metrics.forget_accuracy"):
        merge_evaluations([("a.json", full), ("b.json", record(forget_accuracy=1.0))])
    assert group_runs([bare, full])[0].count == 1
    with pytest.raises(UserError, match="run 0 and run 1"):
        group_runs([full, record(forget_accuracy=1.0)])


def test_report_takes_its_format_from_the_config_and_the_flag_overrides(tmp_path):
    results = write(tmp_path / "r.json", record())
    config = tmp_path / "report.yaml"
    config.write_text("format: markdown\n")
    result = run_cli("report", results, "--config", config)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("| forget set |")
    result = run_cli("report", results, "--config", config, "--format", "csv")
    assert result.exit_code == 0 and result.stdout.startswith("forget_kind,")


def test_report_quiet_prints_nothing_for_people(tmp_path):
    results = write(tmp_path / "r.json", record())
    result = run_cli("report", results, "-q")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    out = tmp_path / "table.txt"
    result = run_cli("report", results, "-q", "-o", out)
    assert result.exit_code == 0 and "mean ± 95% margin" in out.read_text()
