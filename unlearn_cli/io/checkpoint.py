"""Self-describing safetensors checkpoints (SPEC §2): the full state_dict plus string metadata.

Usage:
    data = checkpoint_bytes(model, checkpoint_metadata(arch="mlp", ...))
    checkpoint = load_checkpoint("model.safetensors")   # rebuilds the architecture, loads strictly
    checkpoint.model, checkpoint.meta, checkpoint.sha256
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch import nn

import unlearn_cli
from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.io.safetensors_file import dump_safetensors, parse_safetensors
from unlearn_cli.io.streams import read_input
from unlearn_cli.models import MODELS, create_model

FORMAT = "unlearn-checkpoint/1"
REPRODUCIBLE_ENV = "UNLEARN_REPRODUCIBLE"  # set to 1: no wall time in the file, so equal runs give equal bytes
REQUIRED = ("format", "arch", "arch_kwargs", "num_classes", "dataset", "input_shape")
PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, str]
    sha256: str
    source: str

    @property
    def dataset_kwargs(self) -> dict:
        return json.loads(self.meta.get("dataset_kwargs", "{}"))

    @property
    def config(self) -> dict:
        return json.loads(self.meta.get("config", "{}"))


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without DistributedDataParallel's `module.` or torch.compile's `_orig_mod.` prefixes."""
    clean = {}
    for name, tensor in model.state_dict().items():
        for prefix in PREFIXES:
            name = name.replace(prefix, "")
        clean[name] = tensor
    return clean


def checkpoint_metadata(*, arch: str, arch_kwargs: dict, num_classes: int, dataset: str, dataset_kwargs: dict,
                        input_shape, seed: int, config: dict, wall_time_s: float, **extra: str) -> dict[str, str]:
    """The metadata every checkpoint carries; `extra` adds excluded_sha256, parent_sha256, method, mask_sha256, …"""
    meta = {
        "format": FORMAT, "arch": arch, "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True),
        "num_classes": str(num_classes), "dataset": dataset, "dataset_kwargs": json.dumps(dataset_kwargs, sort_keys=True),
        "input_shape": json.dumps(list(input_shape)), "seed": str(seed), "config": json.dumps(config, sort_keys=True),
        "wall_time_s": recorded_wall_time(wall_time_s), "unlearn_version": unlearn_cli.__version__,
    }
    meta.update({key: str(value) for key, value in extra.items()})
    return meta


def recorded_wall_time(seconds: float) -> str:
    """The wall time as stored: seconds, or "unrecorded" when UNLEARN_REPRODUCIBLE=1 asks for byte-identical files."""
    return "unrecorded" if os.environ.get(REPRODUCIBLE_ENV) == "1" else f"{seconds:.3f}"


def checkpoint_bytes(model: nn.Module, meta: dict[str, str]) -> bytes:
    state = clean_state_dict(model)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"refusing to write a checkpoint with non-finite values in {name}; "
                            f"the run diverged: lower the learning rate")
    return dump_safetensors(state, meta)


def _json_field(meta: dict, key: str, source: str):
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, TypeError):
        raise UserError(f"{source}: metadata field {key!r} is not valid JSON ({meta[key][:60]!r})") from None


def load_checkpoint(path: str, data: bytes | None = None, allow_nonfinite: bool = False) -> Checkpoint:
    """Rebuild the architecture from metadata and load tensors strictly; every defect is a one-line UserError."""
    source = "stdin" if path == "-" else str(path)
    data = read_input(path, "checkpoint") if data is None else data
    tensors, meta = parse_safetensors(data, source)
    missing_fields = [key for key in REQUIRED if key not in meta]
    if meta.get("format", "").startswith("unlearn-mask/"):
        raise UserError(f"{source}: is a mask file, not a checkpoint; pass it with --mask")
    if missing_fields:
        raise UserError(f"{source}: not an unlearn checkpoint (metadata lacks {', '.join(missing_fields)}); "
                        f"create checkpoints with `unlearn train`")
    if meta["format"] != FORMAT:
        raise UserError(f"{source}: unknown checkpoint format {meta['format']!r}; this unlearn "
                        f"{unlearn_cli.__version__} reads {FORMAT}")
    if meta["arch"] not in MODELS:
        raise UserError(f"{source}: unknown arch {meta['arch']!r}; known: {', '.join(MODELS.names())}")
    arch_kwargs = _json_field(meta, "arch_kwargs", source)
    input_shape = _json_field(meta, "input_shape", source)
    if not isinstance(arch_kwargs, dict):
        raise UserError(f"{source}: metadata field 'arch_kwargs' must be a JSON object")
    if not (isinstance(input_shape, list) and len(input_shape) == 3 and all(isinstance(s, int) and 0 < s <= 4096 for s in input_shape)):
        raise UserError(f"{source}: metadata field 'input_shape' must be [channels, height, width], got {meta['input_shape']!r}")
    try:
        num_classes = int(meta["num_classes"])
        if not 1 <= num_classes <= 1_000_000:
            raise ValueError
    except ValueError:
        raise UserError(f"{source}: metadata field 'num_classes' must be a positive integer, got {meta['num_classes']!r}") from None
    try:
        model = create_model(meta["arch"], num_classes, tuple(input_shape), **arch_kwargs)
    except UserError as error:
        raise UserError(f"{source}: {error}") from None
    except (TypeError, ValueError) as error:
        raise UserError(f"{source}: cannot rebuild {meta['arch']} from its metadata ({error})") from None
    expected = model.state_dict()
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise UserError(f"{source}: tensors do not match arch {meta['arch']} ({'; '.join(parts)})")
    for name, reference in expected.items():
        tensor = tensors[name]
        if tensor.shape != reference.shape:
            raise UserError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}, arch {meta['arch']} "
                            f"needs {tuple(reference.shape)}")
        if tensor.dtype != reference.dtype:
            raise UserError(f"{source}: tensor {name} has dtype {tensor.dtype}, expected {reference.dtype}")
        if not allow_nonfinite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{source}: tensor {name} holds NaN or Inf values; the model is broken, retrain it")
    model.load_state_dict(tensors, strict=True)
    return Checkpoint(model=model, meta=meta, sha256=sha256_bytes(data), source=source)
