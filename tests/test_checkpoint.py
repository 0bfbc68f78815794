"""Checkpoint I/O: round trip, strict loading, and one-line errors for every kind of broken file."""

import json

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from conftest import run_cli
from unlearn_cli.io.checkpoint import checkpoint_bytes, load_checkpoint
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
    """(name, path, expected message) for each way a checkpoint can be broken."""
    data = original.read_bytes()
    cases = []

    def case(name, message):
        path = folder / f"{name}.safetensors"
        cases.append((name, path, message))
        return path

    case("truncated", "not a valid safetensors file").write_bytes(data[: len(data) // 2])
    case("not-safetensors", "not a valid safetensors file").write_bytes(b"PK\x03\x04 this is a zip file" * 10)
    case("empty", "too short for a header").write_bytes(b"")
    rewrite(original, case("unknown-arch", "unknown arch 'alexnet'"), arch="alexnet")
    rewrite(original, case("future-format", "unknown checkpoint format 'unlearn-checkpoint/2'"), format="unlearn-checkpoint/2")
    rewrite(original, case("no-metadata", "not an unlearn checkpoint (metadata lacks arch"), arch=None)
    state = load_file(str(original))
    rewrite(original, case("missing-tensor", "missing 5.bias"), {k: v for k, v in state.items() if k != "5.bias"})
    rewrite(original, case("extra-tensor", "unexpected extra.weight"), {**state, "extra.weight": torch.zeros(2)})
    rewrite(original, case("mis-shaped", "tensor 5.bias has shape (11,), arch mlp needs (10,)"), {**state, "5.bias": torch.zeros(11)})
    rewrite(original, case("wrong-dtype", "tensor 5.bias has dtype torch.float64"), {**state, "5.bias": state["5.bias"].double()})
    rewrite(original, case("nan", "tensor 1.weight holds NaN or Inf values"), {**state, "1.weight": state["1.weight"] * float("nan")})
    rewrite(original, case("bad-kwargs", "malformed metadata field 'arch_kwargs' JSON"), arch_kwargs="{width:")
    rewrite(original, case("bad-option", "model 'mlp' has no option colour"), arch_kwargs='{"colour": 1}')
    return cases


def test_every_broken_checkpoint_is_a_one_line_error(tiny_run, tmp_path):
    for name, path, message in broken_files(tiny_run["original"], tmp_path):
        result = run_cli("info", path)
        assert result.exit_code == 1, name
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
