"""`unlearn train`: checkpoints with full metadata, determinism, the oracle, config layering."""

import json
import re

import torch
import yaml
from safetensors import safe_open

from conftest import TINY_MLP, run_cli
from presets import mlp_flags
from unlearn_cli.data import create_dataset, list_datasets
from unlearn_cli.engine import accuracy
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.models import list_models

METADATA = {"format", "arch", "arch_kwargs", "num_classes", "dataset", "input_shape", "seed", "config",
            "wall_time_s", "unlearn_version"}


def metadata(path):
    with safe_open(str(path), "pt") as file:
        return file.metadata()


def test_checkpoint_is_self_describing_and_loads_back(tiny_run):
    meta = metadata(tiny_run["original"])
    assert METADATA <= set(meta)
    assert meta["format"] == "unlearn-checkpoint/1" and meta["arch"] == "mlp"
    assert json.loads(meta["arch_kwargs"]) == {"width": 32}
    assert json.loads(meta["input_shape"]) == [1, 8, 8] and meta["num_classes"] == "10"
    assert json.loads(meta["config"])["epochs"] == 10 and "excluded_sha256" not in meta
    checkpoint = load_checkpoint(str(tiny_run["original"]))
    data = create_dataset("digits")
    assert accuracy(checkpoint.model, data.batches("test", batch_size=256)) > 50  # it learned something
    with safe_open(str(tiny_run["original"]), "pt") as file:
        assert not any(key.startswith(("module.", "_orig_mod.")) for key in file.keys())


def test_oracle_records_the_excluded_forget_set(tiny_run):
    forget = read_forget_set(str(tiny_run["forget"]))
    assert metadata(tiny_run["oracle"])["excluded_sha256"] == forget.sha256


def test_same_seed_gives_identical_tensors_and_metadata(tmp_path):
    paths = [tmp_path / f"{name}.safetensors" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (4, 4, 5)):
        assert run_cli("train", *TINY_MLP, "--seed", seed, "-o", path).exit_code == 0
    a, b, c = (load_checkpoint(str(path)) for path in paths)
    state_a, state_b, state_c = (x.model.state_dict() for x in (a, b, c))
    assert all(torch.equal(state_a[name], state_b[name]) for name in state_a)
    assert not all(torch.equal(state_a[name], state_c[name]) for name in state_a)
    without_time = lambda meta: {k: v for k, v in meta.items() if k != "wall_time_s"}  # noqa: E731
    assert without_time(a.meta) == without_time(b.meta)
    # the tensor section of the file is byte-identical too (only the wall time in the header differs)
    body = lambda data: data[8 + int.from_bytes(data[:8], "little"):]  # noqa: E731
    assert body(paths[0].read_bytes()) == body(paths[1].read_bytes())


def test_yaml_config_with_flag_override(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"dataset": "digits", "arch": "mlp", "arch_options": {"width": 8, "depth": 1},
                                      "epochs": 5, "lr": 0.05}))
    out = tmp_path / "m.safetensors"
    result = run_cli("train", "--config", config, "--epochs", "1", "--quiet", "-o", out)
    assert result.exit_code == 0, result.output
    resolved = json.loads(metadata(out)["config"])
    assert resolved["epochs"] == 1 and resolved["lr"] == 0.05 and resolved["arch_options"] == {"width": 8, "depth": 1}


def test_yaml_config_unknown_key_and_wrong_type(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("epochz: 3\n")
    result = run_cli("train", "--config", config, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 1 and "unknown option 'epochz'; valid options: dataset" in result.stderr
    config.write_text("epochs: many\n")
    result = run_cli("train", "--config", config, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 1 and "option 'epochs': expected int, got str 'many'" in result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_progress_bar_reports_images_per_second(tmp_path):
    result = run_cli("train", *mlp_flags(width=8, epochs=1, quiet=False), "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 0
    assert "img/s" in result.stderr and "loss" in result.stderr and "test accuracy" in result.stderr


def test_unavailable_device_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, whatever this one has
    output = tmp_path / "m.safetensors"
    result = run_cli("train", *TINY_MLP, "--device", "cuda", "-o", output)
    assert result.exit_code == 1 and "no CUDA GPU is visible; use --device cpu or auto" in result.stderr
    assert not output.exists()


def test_help_offers_every_registered_dataset_and_model():
    result = run_cli("train", "--help")
    assert result.exit_code == 0
    words = set(re.findall(r"[\w+-]+", result.output))
    assert set(list_datasets()) <= words and set(list_models()) <= words  # the choices come from the registries
