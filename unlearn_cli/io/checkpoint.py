"""Self-describing safetensors checkpoints: the full state_dict plus string metadata, read into one typed face.

Metadata (all strings in the file, see docs/files.md): `format` (unlearn-checkpoint/1), `arch`, `arch_kwargs`
(JSON), `num_classes`, `dataset`, `dataset_kwargs` (JSON), `input_shape` (JSON), `config` (JSON of the
resolved command), `wall_time_s`, `unlearn_version`, `data_root` when one was given, and the provenance
fields of `Provenance` (seed, method, parent / mask / excluded hashes, …). A reader never re-parses these
strings: `load_checkpoint` checks every field once, sizes the architecture before building it, and
returns them typed. What the file *is* (header, metadata, training record, finite values) is checked without torch
on numpy views of its bytes (`read_checkpoint_file`, what `unlearn info` runs); `load_checkpoint` runs the same checks
and builds the model.

Beside the model's tensors, a checkpoint of `unlearn train` holds `training_confidence`, float32 [N_train]: each
training example's mean confidence over the steps that trained on it (NaN for an example it never trained on), the
memorization proxy's raw material (docs/memorization.md). It is no part of the model: loading leaves it out of the
state_dict, and a checkpoint without it (older files, `train --no-record-memorization`, `apply`) loads as before.

Usage:
    data = checkpoint_bytes(model, checkpoint_metadata(arch="mlp", ..., provenance=Provenance(seed=0)))
    data = checkpoint_bytes(model, meta, training_confidence=record.means()[0])
    checkpoint = load_checkpoint("model.safetensors")   # rebuilds the architecture, loads strictly
    described = read_checkpoint_file("model.safetensors")  # the same file checks, no model, no torch
    described.typed_metadata(), described.parameters, described.training_confidence   # numpy float32 [N_train]
    checkpoint.model, checkpoint.arch, checkpoint.provenance.parent_sha256, checkpoint.new_model()
    checkpoint.training_confidence                       # float32 [N_train], or None
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import unlearn_cli
from unlearn_cli.cost import RecordedCost
from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.limits import INT64_MAX, load_json
from unlearn_cli.io.safetensors_file import (CHUNK, dump_safetensors, nonfinite, safetensors_arrays, torch_dtypes,
                                             torch_name, torch_tensors)
from unlearn_cli.names import BUFFERS, MODELS
from unlearn_cli.streams import read_input, reader

if TYPE_CHECKING:  # torch is imported where a model is built (`info` reads a checkpoint without it)
    import torch
    from torch import nn

FORMAT = "unlearn-checkpoint/1"
REPRODUCIBLE_ENV = "UNLEARN_REPRODUCIBLE"  # set to 1: no wall time in the file, so equal runs give equal bytes
REQUIRED = ("format", "arch", "arch_kwargs", "num_classes", "dataset", "input_shape")
TRAINING_CONFIDENCE = "training_confidence"  # the tensor of the per-example training-time confidence
PREFIXES = ("module.", "_orig_mod.")


def _number(text: str | None, key: str, source: str) -> float | None:
    if text in (None, "", "unrecorded"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{source}: metadata field {key!r} must be a number, got {text[:40]!r}") from None
    return value if math.isfinite(value) else None


def _integer(text: str | None, key: str, source: str, low: int, high: int) -> int | None:
    if text in (None, ""):
        return None
    if not (text.lstrip("-").isdigit() and len(text) <= 20 and low <= int(text) <= high):
        raise UserError(f"{source}: metadata field {key!r} must be an integer in {low}…{high}, got {text[:40]!r}")
    return int(text)


@dataclass(frozen=True)
class Provenance:
    """Where a checkpoint came from. Each field is one metadata key of the same name; None: not recorded."""

    seed: int | None = None  # seed of the run that wrote it
    method: str | None = None  # unlearning method (`apply`); None for `train`
    parent_sha256: str | None = None  # the checkpoint it was unlearned from
    forget_sha256: str | None = None  # the forget set it was unlearned on (`apply`)
    mask_sha256: str | None = None  # the mask file the method used
    mask_strategy: str | None = None  # that mask's strategy, budget and achieved fraction (for reports)
    mask_budget: float | None = None
    mask_selected_fraction: float | None = None
    excluded_sha256: str | None = None  # the forget set it was trained without (an oracle)
    manipulated_sha256: str | None = None  # the manipulation its training data carried (`train --manipulate`)
    # overrides: set only when a flag let a mismatch through
    mask_model_sha256: str | None = None  # --allow-other-model: the checkpoint the mask was computed on
    mask_forget_sha256: str | None = None  # --allow-mismatch: the forget set the mask was computed for
    # `apply --calibrate`: the scale folded into the classifier head after the method (the one change outside a mask)
    calibration_scale: float | None = None

    _NUMBERS = ("mask_budget", "mask_selected_fraction", "calibration_scale")

    def to_meta(self) -> dict[str, str]:
        meta = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is not None:
                meta[item.name] = repr(float(value)) if item.name in self._NUMBERS else str(value)
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, str], source: str) -> "Provenance":
        values = {}
        for item in dataclasses.fields(cls):
            text = meta.get(item.name)
            if item.name == "seed":
                values["seed"] = _integer(text, "seed", source, -INT64_MAX - 1, INT64_MAX)
            elif item.name in cls._NUMBERS:
                values[item.name] = _number(text, item.name, source)
            else:
                values[item.name] = text or None  # older files wrote "" for "none"
        return cls(**values)

    @property
    def overrides(self) -> list[str]:
        """The flags that let a mismatch through when this checkpoint was made."""
        return (["--allow-other-model"] if self.mask_model_sha256 else []) + (
            ["--allow-mismatch"] if self.mask_forget_sha256 else [])


def describe_data(dataset: str, dataset_kwargs: dict) -> str:
    """A dataset and its options as messages name them: `fashion-mnist {"train_subset": 2000}`."""
    return dataset + (f" {json.dumps(dataset_kwargs, sort_keys=True)}" if dataset_kwargs else "")


@dataclass(kw_only=True)
class CheckpointFile:
    """What a checkpoint file is, checked without building its model (`read_checkpoint_file`; no torch)."""

    meta: dict[str, str]  # the raw string metadata, as stored
    sha256: str  # of the file's bytes
    source: str
    arch: str = ""
    arch_kwargs: dict = field(default_factory=dict)
    num_classes: int = 0
    input_shape: tuple[int, int, int] = (0, 0, 0)
    dataset: str = ""
    dataset_kwargs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the resolved configuration of the command that wrote it
    provenance: Provenance = field(default_factory=Provenance)
    wall_time_s: float | None = None
    data_root: str | None = None
    cost: RecordedCost = field(default_factory=RecordedCost)  # work of its run; None fields: not recorded
    layout: dict[str, tuple[str, list[int]]] = field(default_factory=dict)  # the model's tensors: (dtype, shape)
    # float32 [N_train], NaN where not trained on (here a numpy view of the file's bytes); None: not recorded
    training_confidence: Any = None

    @property
    def parameters(self) -> int:
        """Scalars of the model's parameters (its tensors less its buffers, names.BUFFERS): what
        sum(p.numel() for p in model.parameters()) counts once the model is built."""
        return sum(math.prod(shape) for name, (_, shape) in self.layout.items()
                   if name.rsplit(".", 1)[-1] not in BUFFERS)

    def new_model(self) -> nn.Module:
        """The same architecture, freshly initialized (retrain; rft's reset)."""
        from unlearn_cli.models import create_model

        return create_model(self.arch, self.num_classes, self.input_shape, **self.arch_kwargs)

    def describe_data(self) -> str:
        return describe_data(self.dataset, self.dataset_kwargs)

    def typed_metadata(self) -> dict:
        """Every metadata field with its real type (numbers, objects), as `unlearn info --json` shows it."""
        typed = {**self.meta, "arch_kwargs": self.arch_kwargs, "num_classes": self.num_classes,
                 "input_shape": list(self.input_shape), "dataset_kwargs": self.dataset_kwargs, "config": self.config,
                 "wall_time_s": self.wall_time_s}
        typed.update({key: int(value) for key, value in self.cost.to_meta().items()})
        typed.update({key: getattr(self.provenance, key) for key in self.provenance.to_meta()})
        if "world_size" in self.meta:
            typed["world_size"] = _integer(self.meta["world_size"], "world_size", self.source, 1, 2**31)
        return typed


@dataclass(kw_only=True)
class Checkpoint(CheckpointFile):
    """A checkpoint file with its model built and its tensors loaded strictly (`load_checkpoint`)."""

    model: nn.Module
    training_confidence: torch.Tensor | None = None  # float32 [N_train], NaN where not trained on; None: not recorded


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without DistributedDataParallel's `module.` or torch.compile's `_orig_mod.` prefixes."""
    clean = {}
    for name, tensor in model.state_dict().items():
        for prefix in PREFIXES:
            name = name.replace(prefix, "")
        clean[name] = tensor
    return clean


def checkpoint_metadata(*, arch: str, arch_kwargs: dict, num_classes: int, dataset: str, dataset_kwargs: dict,
                        input_shape, config: dict, wall_time_s: float, provenance: Provenance,
                        cost: RecordedCost | None = None, **extra: str) -> dict[str, str]:
    """The metadata every checkpoint carries; `cost` the work of its run; `extra` adds data_root, world_size."""
    meta = {
        "format": FORMAT, "arch": arch, "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True),
        "num_classes": str(num_classes), "dataset": dataset, "dataset_kwargs": json.dumps(dataset_kwargs, sort_keys=True),
        "input_shape": json.dumps(list(input_shape)), "config": json.dumps(config, sort_keys=True),
        "wall_time_s": recorded_wall_time(wall_time_s), "unlearn_version": unlearn_cli.__version__,
        **provenance.to_meta(), **(cost.to_meta() if cost is not None else {}),
    }
    meta.update({key: str(value) for key, value in extra.items()})
    return meta


def recorded_wall_time(seconds: float) -> str:
    """The wall time as stored: seconds, or "unrecorded" when UNLEARN_REPRODUCIBLE=1 asks for byte-identical files."""
    return "unrecorded" if os.environ.get(REPRODUCIBLE_ENV) == "1" else f"{seconds:.3f}"


def checkpoint_bytes(model: nn.Module, meta: dict[str, str], training_confidence: torch.Tensor | None = None) -> bytes:
    """The checkpoint file: the model's state_dict, `meta`, and the training-time confidence [N_train] when given."""
    import torch

    state = clean_state_dict(model)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"refusing to write a checkpoint with non-finite values in {name}; "
                            f"the run diverged: lower the learning rate")
    if training_confidence is not None:
        if TRAINING_CONFIDENCE in state:
            raise ValueError(f"the model has a tensor named {TRAINING_CONFIDENCE}, the name of the training record")
        state[TRAINING_CONFIDENCE] = training_confidence.detach().float().reshape(-1)
    return dump_safetensors(state, meta)


def _json_field(meta: dict, key: str, source: str, kind: type):
    text = meta[key]
    value = load_json(text, source, f"metadata field {key!r}")
    if not isinstance(value, kind):
        raise UserError(f"{source}: metadata field {key!r} must be a JSON {'object' if kind is dict else 'list'}, "
                        f"got {text[:60]!r}")
    return value


def _typed_fields(meta: dict[str, str], source: str) -> dict:
    """The metadata fields checked and typed, before anything is built from them."""
    missing_fields = [key for key in REQUIRED if key not in meta]
    if meta.get("format", "").startswith("unlearn-mask/"):
        raise UserError(f"{source}: is a mask file, not a checkpoint; give a checkpoint of `unlearn train` or "
                        f"`unlearn apply` here (a mask is read by `unlearn apply --mask`)")
    if missing_fields:
        raise UserError(f"{source}: not an unlearn checkpoint (metadata lacks {', '.join(missing_fields)}); "
                        f"create checkpoints with `unlearn train`")
    if meta["format"] != FORMAT:
        raise UserError(f"{source}: unknown checkpoint format {meta['format'][:60]!r}; this unlearn "
                        f"{unlearn_cli.__version__} reads {FORMAT}")
    if meta["arch"] not in MODELS:
        raise UserError(f"{source}: unknown arch {meta['arch'][:60]!r}; known: {', '.join(MODELS)}")
    input_shape = _json_field(meta, "input_shape", source, list)
    if not (len(input_shape) == 3 and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 4096
                                          for s in input_shape)):
        raise UserError(f"{source}: metadata field 'input_shape' must be [channels, height, width] of integers in "
                        f"1…4096, got {meta['input_shape'][:60]!r}")
    return {
        "arch": meta["arch"], "arch_kwargs": _json_field(meta, "arch_kwargs", source, dict),
        "num_classes": _integer(meta["num_classes"], "num_classes", source, 2, 1_000_000),
        "input_shape": tuple(input_shape), "dataset": meta["dataset"],
        "dataset_kwargs": _json_field(meta, "dataset_kwargs", source, dict) if "dataset_kwargs" in meta else {},
        "config": _json_field(meta, "config", source, dict) if "config" in meta else {},
        "provenance": Provenance.from_meta(meta, source),
        "wall_time_s": _number(meta.get("wall_time_s"), "wall_time_s", source),
        "data_root": meta.get("data_root") or None,
        "cost": RecordedCost.from_integers({key: _integer(meta.get(key), key, source, 0, INT64_MAX)
                                            for key in RecordedCost.KEYS}),
    }


def _check_layout(expected: dict, stored: dict, arch: str, source: str) -> None:
    """The tensors the architecture needs (names, shapes, torch dtypes) against those the file stores (names, shapes,
    stored dtypes)."""
    missing = [name for name in expected if name not in stored]
    unexpected = [name for name in stored if name not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise UserError(f"{source}: tensors do not match arch {arch} ({'; '.join(parts)})")
    for name, (shape, dtype) in expected.items():
        stored_dtype, stored_shape = stored[name]
        if tuple(stored_shape) != shape:
            raise UserError(f"{source}: tensor {name} has shape {tuple(stored_shape)}, arch {arch} needs {shape}")
        if torch_dtypes().get(dtype) != stored_dtype:
            raise UserError(f"{source}: tensor {name} has dtype {torch_name(stored_dtype)}, expected {dtype}")


def _checked_file(data: bytes, source: str, arrays: dict, meta: dict[str, str], fields: dict,
                  allow_nonfinite: bool = False) -> CheckpointFile:
    """The file's values, checked on numpy views of its bytes (`arrays`, from `safetensors_arrays`): the training
    record float32 of one dimension and each value in [0, 1] or NaN, every other floating tensor finite."""
    tensors = dict(arrays)
    recorded = tensors.pop(TRAINING_CONFIDENCE, None)
    if recorded is not None:
        dtype, values = recorded
        if dtype != "F32" or values.ndim != 1:
            raise UserError(f"{source}: tensor {TRAINING_CONFIDENCE} must be float32 of one dimension (one value per "
                            f"training example), got {dtype} of shape {list(values.shape)}")
        if any(bool(((part < 0) | (part > 1)).any())  # NaN compares false: not trained on
               for part in (values[start : start + CHUNK] for start in range(0, len(values), CHUNK))):
            raise UserError(f"{source}: tensor {TRAINING_CONFIDENCE} holds values outside [0, 1]; they are "
                            f"probabilities (NaN: not trained on), the file is damaged")
    if not allow_nonfinite:
        for name, (dtype, values) in tensors.items():
            if nonfinite(dtype, values):
                raise UserError(f"{source}: tensor {name} holds NaN or Inf values; the model is broken, retrain it")
    return CheckpointFile(meta=meta, sha256=sha256_bytes(data), source=source,
                          layout={name: (dtype, list(values.shape)) for name, (dtype, values) in tensors.items()},
                          training_confidence=None if recorded is None else recorded[1], **fields)


def _read(path: str, data: bytes | None) -> tuple[str, bytes]:
    source = "stdin" if path == "-" else str(path)
    return source, read_input(path, "checkpoint", limit_name="tensor_file_bytes") if data is None else data


@reader("checkpoint")
def read_checkpoint_file(path: str, data: bytes | None = None) -> CheckpointFile:
    """Check what a checkpoint file is without building its model (no torch): its header, its metadata, its training
    record and that its floating tensors are finite; every defect is a one-line UserError. Whether its tensors fit
    its architecture is for `load_checkpoint` to say."""
    source, data = _read(path, data)
    arrays, meta = safetensors_arrays(data, source)
    return _checked_file(data, source, arrays, meta, _typed_fields(meta, source))


@reader("checkpoint")
def load_checkpoint(path: str, data: bytes | None = None, allow_nonfinite: bool = False) -> Checkpoint:
    """Check the metadata, size the architecture it asks for and compare it with the tensors the file stores
    (before anything is allocated: a checkpoint cannot ask for more than it holds), check the values as
    `read_checkpoint_file` does, then build the model and load the tensors strictly; every defect is a one-line
    UserError."""
    from unlearn_cli.models import measure_model

    source, data = _read(path, data)
    arrays, meta = safetensors_arrays(data, source)
    fields = _typed_fields(meta, source)
    size = measure_model(fields["arch"], fields["num_classes"], fields["input_shape"], fields["arch_kwargs"],
                         where=f"{source}: ")
    _check_layout(size.layout, {name: (dtype, values.shape) for name, (dtype, values) in arrays.items()
                                if name != TRAINING_CONFIDENCE}, fields["arch"], source)
    described = _checked_file(data, source, arrays, meta, fields, allow_nonfinite)
    tensors = torch_tensors(arrays)
    training_confidence = tensors.pop(TRAINING_CONFIDENCE, None)
    model = size.build()  # measured above: not measured again
    model.load_state_dict(tensors, strict=True)
    return Checkpoint(model=model, training_confidence=training_confidence,
                      **{item.name: getattr(described, item.name) for item in dataclasses.fields(CheckpointFile)
                         if item.name != "training_confidence"})
