"""`unlearn localize` and `unlearn mask`: mask files, stdout, determinism, controls, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.cli.app import app
from unlearn_cli.data import create_dataset
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import forget_set_json, read_forget_set
from unlearn_cli.io.mask import mask_counts, parse_mask, read_mask
from unlearn_cli.localize import list_strategies
from unlearn_cli.localize.budget import budget_limit


def localize(run, *extra):
    return run_cli("localize", "--model", run["original"], "--forget", run["forget"], "-q", *extra)


def per_tensor_counts(mask) -> dict:
    return {name: int(tensor.sum()) for name, tensor in mask.items()}


def test_help_lists_every_strategy():
    result = CliRunner().invoke(app, ["localize", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name in list_strategies():
        assert f" {name}" in result.output, name


def test_del_mask_file_fits_the_model_and_records_its_provenance(tiny_run, tmp_path):
    output = tmp_path / "mask.safetensors"
    result = localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", output)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(str(tiny_run["original"]))
    mask_file = read_mask(str(output), checkpoint.model)
    mask, meta = mask_file.mask, mask_file.meta
    assert mask_file.record.model_sha256 == meta["model_sha256"] == checkpoint.sha256
    selected, total = mask_counts(mask)
    assert meta["format"] == "unlearn-mask/1" and meta["strategy"] == "del"
    assert (meta["criterion"], meta["granularity"], meta["budget"]) == ("weighted-grad", "neuron", "0.3")
    assert (int(meta["selected"]), int(meta["total"])) == (selected, total)
    assert float(meta["selected_fraction"]) == selected / total and 0 < selected <= budget_limit(0.3, total)
    assert meta["forget_sha256"] == read_forget_set(str(tiny_run["forget"])).sha256
    assert json.loads(meta["config"])["criterion"] == "weighted-grad"  # the resolved preset
    for name, tensor in mask.items():  # whole neurons: every weight row all in or all out
        if tensor.dim() >= 2:
            assert bool((tensor.all(1) | ~tensor.any(1)).all()), name


def test_same_inputs_give_a_byte_identical_mask(tiny_run, tmp_path):
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for path in paths:
        assert localize(tiny_run, "--strategy", "salun", "--budget", "0.2", "-o", path).exit_code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_mask_to_stdout(tiny_run, tmp_path):
    result = localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", "-")
    assert result.exit_code == 0, result.stderr
    file = tmp_path / "mask.safetensors"
    assert localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", file).exit_code == 0
    assert result.stdout_bytes == file.read_bytes()


def test_config_file_sets_options_and_flags_override(tiny_run, tmp_path):
    config = tmp_path / "localize.yaml"
    config.write_text("strategy: salun\nbudget: 0.1\n")
    output = tmp_path / "mask.safetensors"
    assert localize(tiny_run, "--config", config, "--budget", "0.05", "-o", output).exit_code == 0
    meta = parse_mask(output.read_bytes(), "mask")[1]
    assert (meta["strategy"], meta["budget"]) == ("salun", "0.05")


def test_critmem_budget_is_an_optional_cap(tiny_run, tmp_path):
    free, capped = tmp_path / "free.safetensors", tmp_path / "capped.safetensors"
    assert localize(tiny_run, "--strategy", "critmem", "--max-iterations", "20", "-o", free).exit_code == 0
    free_mask, free_meta = parse_mask(free.read_bytes(), "free")
    assert free_meta["budget"] == "" and mask_counts(free_mask)[0] > 0
    selected, total = mask_counts(free_mask)
    cap = f"{(selected - 1) / total:.8f}"  # one scalar short of the free union
    assert localize(tiny_run, "--strategy", "critmem", "--max-iterations", "20", "--budget", cap, "-o", capped).exit_code == 0
    capped_mask, capped_meta = parse_mask(capped.read_bytes(), "capped")
    assert mask_counts(capped_mask)[0] <= budget_limit(float(cap), total) < selected
    assert capped_meta["budget"] == repr(float(cap))
    assert all(bool((~free_mask[name] & capped_mask[name]).sum() == 0) for name in free_mask)  # a subset of the union


def test_random_like_from_localize_and_from_mask_random_agree(tiny_run, tmp_path):
    reference, control, again = (tmp_path / f"{name}.safetensors" for name in ("del", "control", "again"))
    assert localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", reference).exit_code == 0
    assert localize(tiny_run, "--strategy", "random", "--like", reference, "--seed", "3", "-o", control).exit_code == 0
    result = run_cli("mask", "random", "--like", reference, "--seed", "3", "-o", again, "-q")
    assert result.exit_code == 0, result.output
    reference_mask, reference_meta = parse_mask(reference.read_bytes(), "reference")
    control_mask, control_meta = parse_mask(control.read_bytes(), "control")
    again_mask, again_meta = parse_mask(again.read_bytes(), "again")
    assert per_tensor_counts(control_mask) == per_tensor_counts(reference_mask)
    assert all(np.array_equal(control_mask[name], again_mask[name]) for name in control_mask)  # numpy: parse_mask
    assert not all(np.array_equal(control_mask[name], reference_mask[name]) for name in control_mask)
    assert control_meta["strategy"] == again_meta["strategy"] == "random"
    assert again_meta["model_sha256"] == reference_meta["model_sha256"]  # usable with the same checkpoint


def test_mask_info_and_compare(tiny_run, tmp_path):
    first, second = tmp_path / "del.safetensors", tmp_path / "salun.safetensors"
    assert localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", first).exit_code == 0
    assert localize(tiny_run, "--strategy", "salun", "--budget", "0.3", "-o", second).exit_code == 0
    info = run_cli("mask", "info", first, "--json", "-")
    assert info.exit_code == 0, info.output
    document = json.loads(info.stdout)
    mask, meta = parse_mask(first.read_bytes(), "first")
    assert document["selected"] == int(meta["selected"]) and document["total"] == int(meta["total"])
    assert {t["name"]: t["selected"] for t in document["tensors"]} == per_tensor_counts(mask)
    assert "total" in info.stderr and "strategy del" in info.stderr  # the table goes to stderr

    compare = run_cli("mask", "compare", first, second, "--json", "-", "-q")
    assert compare.exit_code == 0, compare.output
    overlap = json.loads(compare.stdout)
    other = parse_mask(second.read_bytes(), "second")[0]
    both = sum(int((mask[n] & other[n]).sum()) for n in mask)
    either = sum(int((mask[n] | other[n]).sum()) for n in mask)
    assert overlap["iou"] == both / either and 0 < overlap["iou"] < 1
    assert json.loads(run_cli("mask", "compare", first, first, "--json", "-", "-q").stdout)["iou"] == 1.0


# --- bad input: one line on stderr, exit 1, nothing written ------------------------------------------------------------


def assert_refused(result, output, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}.*"))  # no temporary left behind


@pytest.mark.parametrize("budget", ["0", "1.5", "-0.2", "abc", "nan"])
def test_bad_budget_is_refused(tiny_run, tmp_path, budget):
    output = tmp_path / "mask.safetensors"
    assert_refused(localize(tiny_run, "--strategy", "del", "--budget", budget, "-o", output), output, "--budget", budget)


def test_budget_too_small_for_any_unit_is_refused(tiny_run, tmp_path):
    output = tmp_path / "mask.safetensors"
    assert_refused(localize(tiny_run, "--strategy", "shallowest", "--budget", "0.01", "-o", output), output,
                   "--budget 0.01 keeps nothing", "raise --budget to")


def test_forget_set_of_another_dataset_is_refused(tiny_run, tmp_path):
    num_train = create_dataset("digits").num_train
    forget = tmp_path / "forget.json"
    forget.write_bytes(forget_set_json(torch.tensor([1, 2]), dataset="synthetic", num_train=num_train, kind="indices",
                                       fraction=0.0, classes=None, seed=0))
    output = tmp_path / "mask.safetensors"
    result = run_cli("localize", "--model", tiny_run["original"], "--forget", forget, "--budget", "0.3", "-o", output)
    assert_refused(result, output, "synthetic", "digits")


@pytest.mark.parametrize("content, fragment", [("99999\n", "out of range"), ("", "empty")])
def test_bad_indices_are_refused(tiny_run, tmp_path, content, fragment):
    forget = tmp_path / "forget.txt"
    forget.write_text(content)
    output = tmp_path / "mask.safetensors"
    result = run_cli("localize", "--model", tiny_run["original"], "--forget", forget, "--budget", "0.3", "-o", output)
    assert_refused(result, output, fragment)


def test_checkpoint_that_does_not_load_is_refused(tiny_run, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_run["original"].read_bytes()[:200])
    output = tmp_path / "mask.safetensors"
    result = run_cli("localize", "--model", broken, "--forget", tiny_run["forget"], "--budget", "0.3", "-o", output)
    assert_refused(result, output, "broken.safetensors")


def test_option_that_does_not_apply_is_refused(tiny_run, tmp_path):
    output = tmp_path / "mask.safetensors"
    assert_refused(localize(tiny_run, "--strategy", "deepest", "--budget", "0.3", "--criterion", "grad", "-o", output),
                   output, "--criterion")
    assert_refused(localize(tiny_run, "--strategy", "del", "-o", output), output, "--budget")


def test_compare_refuses_masks_of_different_models(tiny_run, tmp_path):
    first = tmp_path / "first.safetensors"
    assert localize(tiny_run, "--strategy", "del", "--budget", "0.3", "-o", first).exit_code == 0
    other_model = tmp_path / "wide.safetensors"
    assert run_cli("train", *mlp_flags(width=8, epochs=1), "-o", other_model).exit_code == 0
    second = tmp_path / "second.safetensors"
    result = run_cli("localize", "--model", other_model, "--forget", tiny_run["forget"], "--budget", "0.3", "-q", "-o", second)
    assert result.exit_code == 0, result.output
    result = run_cli("mask", "compare", first, second)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "same model" in result.stderr
