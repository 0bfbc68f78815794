"""Checkpoint I/O: round trip, strict loading, and one-line errors for every kind of broken file."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from conftest import run_cli
from unlearn_cli.io.checkpoint import Provenance, checkpoint_bytes, checkpoint_metadata, load_checkpoint
from unlearn_cli.models import create_model
from unlearn_cli.streams import write_output


def rewrite(source, target, tensors=None, **meta_changes):
    """Copy a checkpoint with some tensors or metadata fields replaced (None removes a field)."""
    with safe_open(str(source), "pt") as file:
        meta = dict(file.metadata())
    state = load_file(str(source)) if tensors is None else tensors
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    save_file(state, str(target), metadata=meta)


def test_round_trip_is_exact(tiny_run, tmp_path):
    checkpoint = load_checkpoint(str(tiny_run["original"]))
    assert checkpoint.training_confidence is not None  # `train` records it by default: it goes back in with the model
    copy = tmp_path / "copy.safetensors"
    write_output(copy, checkpoint_bytes(checkpoint.model, checkpoint.meta, checkpoint.training_confidence))
    assert copy.read_bytes() == tiny_run["original"].read_bytes()


def test_info_shows_metadata(tiny_run):
    result = run_cli("info", tiny_run["original"], "--json", "-")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["arch"] == "mlp" and document["parameters"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10


def broken_files(original, folder):
    """(name, path, expected message, whether only building the model finds it) for each way a checkpoint can be
    broken: `info` finds what the file itself says wrong, `info --load` also tensors that do not fit the arch."""
    data = original.read_bytes()
    cases = []

    def case(name, message, load=False):
        path = folder / f"{name}.safetensors"
        cases.append((name, path, message, load))
        return path

    case("truncated", "not a valid safetensors file").write_bytes(data[: len(data) // 2])
    case("not-safetensors", "not a valid safetensors file").write_bytes(b"PK\x03\x04 this is a zip file" * 10)
    case("empty", "too short for a header").write_bytes(b"")
    rewrite(original, case("unknown-arch", "unknown arch 'alexnet'"), arch="alexnet")
    rewrite(original, case("future-format", "unknown checkpoint format 'unlearn-checkpoint/2'"), format="unlearn-checkpoint/2")
    rewrite(original, case("no-metadata", "not an unlearn checkpoint (metadata lacks arch"), arch=None)
    state = load_file(str(original))
    rewrite(original, case("missing-tensor", "missing 5.bias", load=True),
            {k: v for k, v in state.items() if k != "5.bias"})
    rewrite(original, case("extra-tensor", "unexpected extra.weight", load=True),
            {**state, "extra.weight": torch.zeros(2)})
    rewrite(original, case("mis-shaped", "tensor 5.bias has shape (11,), arch mlp needs (10,)", load=True),
            {**state, "5.bias": torch.zeros(11)})
    rewrite(original, case("wrong-dtype", "tensor 5.bias has dtype torch.float64", load=True),
            {**state, "5.bias": state["5.bias"].double()})
    rewrite(original, case("nan", "tensor 1.weight holds NaN or Inf values"), {**state, "1.weight": state["1.weight"] * float("nan")})
    rewrite(original, case("bad-kwargs", "malformed metadata field 'arch_kwargs' JSON"), arch_kwargs="{width:")
    rewrite(original, case("bad-option", "model 'mlp' has no option colour", load=True), arch_kwargs='{"colour": 1}')
    return cases


def test_every_broken_checkpoint_is_a_one_line_error(tiny_run, tmp_path):
    for name, path, message, load in broken_files(tiny_run["original"], tmp_path):
        for arguments in ([path, "--load"], [path]):
            result = run_cli("info", *arguments)
            if load and "--load" not in arguments:  # the file itself is sound: only building the model finds it
                assert result.exit_code == 0, (name, result.output)
                continue
            assert result.exit_code == 1, (name, arguments)
            assert result.stderr.startswith(f"error: {path}: "), (name, result.stderr)
            assert message in result.stderr, (name, result.stderr)
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, name


def test_a_mask_given_as_checkpoint_says_so(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_file({"w": torch.ones(2, dtype=torch.bool)}, str(path), metadata={"format": "unlearn-mask/1"})
    result = run_cli("info", path)
    assert result.exit_code == 1 and "is a mask file, not a checkpoint; give a checkpoint" in result.stderr


def test_missing_file(tmp_path):
    result = run_cli("info", tmp_path / "nope.safetensors")
    assert result.exit_code == 1 and "checkpoint not found; check the path" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"garbage!")
    result = run_cli("--debug", "info", tmp_path / "x.safetensors")
    assert result.exit_code == 1 and result.exception is not None


@pytest.mark.parametrize("arch, options, shape", [("mlp", {"width": 16}, (1, 8, 8)), ("cnn", {"width": 4}, (3, 16, 16)),
                                                  ("resnet18", {"width": 4}, (3, 32, 32))])
def test_info_counts_the_parameters_without_building_the_model(tmp_path, arch, options, shape):
    """`info` counts the file's tensors less the buffers (BatchNorm's statistics in cnn and resnet18): the number
    sum(p.numel()) gives over the built model's parameters, which `info --load` prints too."""
    model = create_model(arch, 10, shape, **options)
    meta = checkpoint_metadata(arch=arch, arch_kwargs=options, num_classes=10, dataset="digits", dataset_kwargs={},
                               input_shape=shape, config={}, wall_time_s=0.0, provenance=Provenance(seed=0))
    path = tmp_path / f"{arch}.safetensors"
    write_output(path, checkpoint_bytes(model, meta))
    counted = sum(p.numel() for p in model.parameters())
    assert counted < sum(t.numel() for t in model.state_dict().values()) or arch == "mlp"  # buffers left out
    quick, loaded = (run_cli("info", path, *extra, "--json", "-") for extra in ((), ("--load",)))
    assert quick.exit_code == 0 and loaded.exit_code == 0, quick.output + loaded.output
    assert json.loads(quick.stdout) == json.loads(loaded.stdout)
    assert json.loads(quick.stdout)["parameters"] == counted
