"""Provenance across commands: a forget set for another dataset is refused unless --allow-mismatch says
otherwise, and the override is recorded in the output's metadata."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from conftest import run_cli
from presets import mlp_flags


@pytest.fixture(scope="module")
def foreign_forget(tiny_run):
    """The tiny run's forget indices, labelled as made for another dataset."""
    document = json.loads(tiny_run["forget"].read_text())
    document["dataset"] = "synthetic"
    path = tiny_run["folder"] / "foreign.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("command", [
    ("localize", "--strategy", "del", "--budget", "0.2"),
    ("apply", "--method", "finetune", "--epochs", "1"),
])
def test_forget_set_for_another_dataset(tiny_run, foreign_forget, tmp_path, command):
    output = tmp_path / "out.safetensors"
    arguments = (command[0], "--model", tiny_run["original"], "--forget", foreign_forget, *command[1:], "-q", "-o", output)
    refused = run_cli(*arguments)
    assert refused.exit_code == 1 and not output.exists()
    assert "forget set is for dataset 'synthetic', the model is trained on 'digits'" in refused.stderr
    assert "--allow-mismatch" in refused.stderr
    allowed = run_cli(*arguments, "--allow-mismatch")
    assert allowed.exit_code == 0, allowed.output
    with safe_open(str(output), "pt") as file:
        assert json.loads(file.metadata()["config"])["allow_mismatch"] is True


def test_mask_from_another_checkpoint_is_recorded_when_allowed(tiny_run, tmp_path):
    other = tmp_path / "other.safetensors"
    assert run_cli("train", *mlp_flags(width=32, epochs=1), "--seed", "9", "-o", other).exit_code == 0
    mask = tmp_path / "mask.safetensors"
    assert run_cli("localize", "--model", other, "--forget", tiny_run["forget"], "--budget", "0.2", "-q",
                   "-o", mask).exit_code == 0
    output = tmp_path / "out.safetensors"
    arguments = ("apply", "--model", tiny_run["original"], "--forget", tiny_run["forget"], "--method", "finetune",
                 "--epochs", "1", "--mask", mask, "-q", "-o", output)
    refused = run_cli(*arguments)
    assert refused.exit_code == 1 and "mask was computed on another checkpoint" in refused.stderr
    assert not output.exists()
    assert run_cli(*arguments, "--allow-other-model").exit_code == 0
    with safe_open(str(output), "pt") as file:
        meta = file.metadata()
    assert json.loads(meta["config"])["allow_other_model"] is True
    assert meta["mask_model_sha256"] != meta["parent_sha256"]
