"""`unlearn apply`: output metadata, the localize | apply pipe, mask refusals, config layering, errors."""

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.io.mask import mask_bytes, mask_metadata, read_mask
from unlearn_cli.methods import list_methods
from unlearn_cli.models import classifier_head_names



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A class-3 forget set, two tiny originals (different seeds), a narrower model, and hand-made masks."""
    folder = tmp_path_factory.mktemp("apply")
    paths = {name: folder / f"{name}.safetensors" for name in ("original", "other", "narrow")}
    paths["forget"] = folder / "forget.json"
    for arguments in (
        ("split", "--dataset", "digits", "--kind", "class", "--classes", "3", "--fraction", "1", "-o", paths["forget"], "-q"),
        ("train", *mlp_flags(width=32, epochs=5), "-o", paths["original"]),
        ("train", *mlp_flags(width=32, epochs=5), "--seed", "1", "-o", paths["other"]),
        ("train", *mlp_flags(width=16, epochs=5), "-o", paths["narrow"]),
    ):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    forget = read_forget_set(str(paths["forget"]))
    for name in ("original", "other", "narrow"):
        checkpoint = load_checkpoint(str(paths[name]))
        generator = torch.Generator().manual_seed(0)
        mask = {key: torch.rand(p.shape, generator=generator) < 0.2 for key, p in checkpoint.model.named_parameters()}
        meta = mask_metadata(strategy="random", criterion="none", granularity="parameter", budget=0.3, mask=mask,
                             model_sha256=checkpoint.sha256, forget_sha256=forget.sha256, seed=0)
        paths[f"{name}_mask"] = folder / f"{name}_mask.safetensors"
        paths[f"{name}_mask"].write_bytes(mask_bytes(mask, meta))
    return paths


def apply_cli(files, output, *arguments, input=None):
    return run_cli("apply", "--model", files["original"], "--forget", files["forget"], "-o", output, "--quiet",
                   *arguments, input=input)


def assert_obeys_mask(parent_path, child_path, mask, exempt=()):
    parent = dict(load_checkpoint(str(parent_path)).model.named_parameters())
    child = dict(load_checkpoint(str(child_path)).model.named_parameters())
    changed = 0
    for name, selected in mask.items():
        if name in exempt:
            continue
        assert torch.equal(parent[name].detach()[~selected], child[name].detach()[~selected]), name
        changed += int((parent[name] != child[name]).sum())
    assert changed > 0


def test_output_records_method_hashes_and_resolved_config(files, tmp_path):
    output = tmp_path / "del.safetensors"
    result = apply_cli(files, output, "--method", "rft", "--mask", files["original_mask"], "--lr", "0.05",
                       "--max-steps", "3", "--param", "final_lr_fraction=0.1")
    assert result.exit_code == 0, result.output
    child = load_checkpoint(str(output))
    parent = load_checkpoint(str(files["original"]))
    meta = child.meta
    assert meta["method"] == "rft"
    assert meta["parent_sha256"] == sha256_bytes(files["original"].read_bytes()) == parent.sha256
    assert meta["mask_sha256"] == sha256_bytes(files["original_mask"].read_bytes())
    assert float(meta["wall_time_s"]) >= 0 and "excluded_sha256" not in meta
    for key in ("arch", "arch_kwargs", "num_classes", "dataset", "dataset_kwargs", "input_shape"):
        assert meta[key] == parent.meta[key]
    config = json.loads(meta["config"])
    assert config["method"] == "rft" and config["lr"] == 0.05 and config["max_steps"] == 3
    assert config["final_lr_fraction"] == 0.1 and config["train_head"] is True and config["momentum"] == 0.9
    mask = read_mask(str(files["original_mask"])).mask
    assert_obeys_mask(files["original"], output, mask, exempt=classifier_head_names(child.model))


@pytest.mark.slow
def test_localize_piped_into_apply_as_real_processes(files, tmp_path):
    """`unlearn localize … -o - | tee mask | unlearn apply --mask - …` in a real shell pipeline."""
    unlearn = f"{shlex.quote(sys.executable)} -m unlearn_cli"
    model, forget = shlex.quote(str(files["original"])), shlex.quote(str(files["forget"]))
    mask_file, output = tmp_path / "mask.safetensors", tmp_path / "piped.safetensors"
    pipeline = (f"set -o pipefail; {unlearn} localize --model {model} --forget {forget} --strategy del --budget 0.2 -q -o - "
                f"| tee {shlex.quote(str(mask_file))} "
                f"| {unlearn} apply --model {model} --forget {forget} --method rft --no-train-head --max-steps 5 "
                f"--mask - -q -o {shlex.quote(str(output))}")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    mask = read_mask(str(mask_file)).mask
    assert load_checkpoint(str(output)).meta["mask_sha256"] == sha256_bytes(mask_file.read_bytes())
    assert_obeys_mask(files["original"], output, mask)  # --no-train-head: the head obeys the mask too


def test_mask_from_another_checkpoint_is_refused_unless_allowed(files, tmp_path):
    output = tmp_path / "out.safetensors"
    refused = apply_cli(files, output, "--method", "finetune", "--mask", files["other_mask"], "--max-steps", "2")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert "another checkpoint" in refused.stderr and "--allow-other-model" in refused.stderr
    assert not output.exists() and list(tmp_path.iterdir()) == []
    allowed = apply_cli(files, output, "--method", "finetune", "--mask", files["other_mask"], "--max-steps", "2",
                        "--allow-other-model")
    assert allowed.exit_code == 0, allowed.output
    meta = load_checkpoint(str(output)).meta
    assert json.loads(meta["config"])["allow_other_model"] is True
    assert meta["mask_model_sha256"] == load_checkpoint(str(files["other"])).sha256


def test_mask_of_another_shape_is_refused_even_when_allowed(files, tmp_path):
    output = tmp_path / "out.safetensors"
    result = apply_cli(files, output, "--method", "finetune", "--mask", files["narrow_mask"], "--allow-other-model")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "has shape" in result.stderr and "compute the mask on this model" in result.stderr
    assert not output.exists()


def test_mask_from_stdin_in_process(files, tmp_path):
    output = tmp_path / "out.safetensors"
    result = apply_cli(files, output, "--method", "ssd", "--mask", "-", "--param", "selection_weight=1",
                       input=files["original_mask"].read_bytes())
    assert result.exit_code == 0, result.output
    mask = read_mask(str(files["original_mask"])).mask
    assert_obeys_mask(files["original"], output, mask)


def test_retrain_is_an_oracle_and_ignores_the_mask(files, tmp_path):
    output = tmp_path / "oracle.safetensors"
    result = run_cli("apply", "--model", files["original"], "--forget", files["forget"], "--method", "retrain",
                     "--mask", files["original_mask"], "--epochs", "1", "-o", output)
    assert result.exit_code == 0, result.output
    assert "ignores the mask" in result.stderr
    meta = load_checkpoint(str(output)).meta
    assert meta["excluded_sha256"] == read_forget_set(str(files["forget"])).sha256
    assert json.loads(meta["config"])["epochs"] == 1 and json.loads(meta["config"])["lr"] == 0.1  # the parent's lr


def test_yaml_sets_method_options_and_flags_override(files, tmp_path):
    config = tmp_path / "apply.yaml"
    config.write_text(yaml.safe_dump({"method": "neggrad+", "beta": 0.9, "lr": 0.5, "epochs": 1, "max_steps": 2}))
    output = tmp_path / "out.safetensors"
    result = apply_cli(files, output, "--config", config, "--lr", "0.001")
    assert result.exit_code == 0, result.output
    recorded = json.loads(load_checkpoint(str(output)).meta["config"])
    assert recorded["method"] == "neggrad+" and recorded["beta"] == 0.9 and recorded["lr"] == 0.001
    assert load_checkpoint(str(output)).provenance.mask_sha256 is None and "mask_sha256" not in load_checkpoint(str(output)).meta


@pytest.mark.parametrize("arguments, message", [
    (("--method", "finetune", "--param", "beta=0.5"), "method 'finetune' has no option 'beta'"),
    (("--method", "retrain", "--freeze-bn"), "method 'retrain' has no option 'freeze_bn'"),
    (("--method", "finetune", "--train-head"), "has no option 'train_head'"),
    (("--method", "forget-all"), "unknown method 'forget-all'; choose one of: finetune"),
    (("--method", "rft", "--param", "lr"), "--param 'lr': write it as key=value"),
    (("--method", "finetune", "--lr", "1e6", "--max-steps", "3"), "lower the learning rate"),
])
def test_bad_options_are_one_line_errors(files, tmp_path, arguments, message):
    output = tmp_path / "out.safetensors"
    result = apply_cli(files, output, *arguments)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not output.exists()


def test_model_and_forget_are_required(tmp_path):
    result = run_cli("apply", "--method", "finetune", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1 and "needs --model" in result.stderr


def test_help_lists_every_method():
    result = run_cli("apply", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in list_methods():
        assert f"{name}:" in text
