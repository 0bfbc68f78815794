"""Mask files: one bool tensor per trainable parameter, keyed by `named_parameters()` name (docs/files.md).

Metadata (all strings in the file): `format` (unlearn-mask/1) and the fields of `MaskRecord` (strategy,
budget, counts, the hashes of the checkpoint and forget set it was computed for, …). A reader never re-parses
these strings: `read_mask` checks every field once and returns them typed as `mask_file.record`.

A mask is parsed and checked once, without torch, into numpy bool views of the file's bytes (`read_mask_arrays`, what
`unlearn mask info` runs); `read_mask` converts them to torch tensors. `mask_counts` takes either.

Usage:
    data = mask_bytes(mask, mask_metadata(strategy="del", ..., model_sha256=checkpoint.sha256))
    mask_file = read_mask("mask.safetensors", model)   # or "-" for stdin; torch bool tensors
    mask_file.mask, mask_file.record.budget, mask_file.sha256
    mask_file = read_mask_arrays("mask.safetensors")    # the same checks; numpy bool arrays, no torch
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

import unlearn_cli
from unlearn_cli.cost import Work
from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.io.safetensors_file import as_tensor, dump_safetensors, safetensors_arrays, torch_name
from unlearn_cli.limits import INT64_MAX, load_json
from unlearn_cli.streams import read_input, reader
from unlearn_cli.localize.budget import budget_limit

if TYPE_CHECKING:  # torch is imported where tensors are made (`mask info` reads a mask without it)
    import torch
    from torch import nn

FORMAT = "unlearn-mask/1"
Mask = dict[str, "torch.Tensor"]
Arrays = dict[str, np.ndarray]  # a mask as read: numpy bool views of the file's bytes

_NUMBERS = ("budget", "selected_fraction", "topk")  # "" (no budget) is None
_WORK = ("work_forward", "work_backward")  # non-negative
_INTEGERS = ("selected", "total", "seed", *_WORK)


@dataclass(frozen=True)
class MaskRecord:
    """How a mask was computed. Each field is one metadata key of the same name; None: not recorded (a mask
    without a budget records "" for it). Text fields keep the stored string as it is."""

    strategy: str | None = None  # localization strategy (`del`, `salun`, `random`, …)
    criterion: str | None = None  # its scoring criterion (`none` when it scores nothing)
    granularity: str | None = None  # `neuron` or `parameter`
    budget: float | None = None  # share of the parameters it may select; None: no budget
    selected_fraction: float | None = None  # share of the parameters it selects
    topk: float | None = None  # share of a neuron's scores averaged into its score
    selected: int | None = None  # parameters (scalars) selected
    total: int | None = None  # parameters (scalars) of the model
    seed: int | None = None
    work_forward: int | None = None  # examples the localization forwarded
    work_backward: int | None = None  # examples it back-propagated
    config: dict | None = None  # the resolved configuration of the command that wrote it
    model_sha256: str | None = None  # the checkpoint it was computed on
    forget_sha256: str | None = None  # the forget set it was computed for
    like_sha256: str | None = None  # the mask whose per-tensor counts it copies (`--like`)
    unlearn_version: str | None = None

    def to_meta(self) -> dict[str, str]:
        """The metadata to store: `format` and every recorded field as a string (the budget always, "" for none)."""
        meta = {"format": FORMAT, "budget": ""}
        for key, value in dataclasses.asdict(self).items():
            if value is not None:
                meta[key] = (repr(float(value)) if key in _NUMBERS else json.dumps(value, sort_keys=True)
                             if key == "config" else str(value))
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, str], source: str) -> "MaskRecord":
        """Every recorded field read as its type; a value that does not read is a one-line UserError naming it."""
        return cls(**{item.name: _typed(item.name, meta[item.name], source)
                      for item in dataclasses.fields(cls) if item.name in meta})

    def describe(self) -> str:
        """`strategy del, criterion weighted-grad, granularity neuron, budget 0.3`: what it records of these."""
        meta = self.to_meta()
        return ", ".join(f"{key} {meta[key]}" for key in ("strategy", "criterion", "granularity", "budget")
                         if meta.get(key))

    @property
    def localize_units(self) -> int | None:
        """The work of the localization that computed it (None: not recorded)."""
        if self.work_forward is None or self.work_backward is None:
            return None
        return Work(self.work_forward, self.work_backward).units


def _typed(key: str, text: str, source: str):
    """One metadata field as its type: numbers finite ("" a budget of None), integers (work non-negative), `config`
    a JSON object, the rest the string as stored."""
    if key not in _NUMBERS + _INTEGERS + ("config",):
        return text
    try:
        if key == "config":
            value = load_json(text, source, "mask metadata 'config'")
            valid = isinstance(value, dict)
        elif key in _INTEGERS:
            value = int(text)
            valid = key not in _WORK or 0 <= value <= INT64_MAX
        elif text == "" and key == "budget":
            value, valid = None, True
        else:
            value = float(text)
            valid = math.isfinite(value)
    except ValueError:  # json.JSONDecodeError is a ValueError
        valid = False
    if not valid:
        kind = "a JSON object" if key == "config" else "an integer" if key in _INTEGERS else "a finite number"
        raise UserError(f"{source}: mask metadata {key!r} is {text[:40]!r}, not {kind}; the file is damaged, "
                        f"recompute it with `unlearn localize`")
    return value


def typed_mask_metadata(meta: dict[str, str], source: str = "mask") -> dict:
    """A mask's metadata for JSON (`mask info --json`): every key as stored, the recorded fields as their types (an
    empty budget as null, `config` as an object)."""
    record = MaskRecord.from_meta(meta, source)
    return {**meta, **{key: value for key, value in dataclasses.asdict(record).items() if key in meta}}


@dataclass
class MaskFile:
    mask: Mask | Arrays  # torch tensors from `read_mask`, numpy arrays from `read_mask_arrays`
    meta: dict[str, str]  # as stored: strings
    sha256: str  # of the file's bytes
    source: str
    record: MaskRecord = field(default_factory=MaskRecord)  # the metadata, typed


def mask_counts(mask: Mask | Arrays) -> tuple[int, int]:
    """(selected scalars, total scalars), of torch tensors or numpy arrays."""
    return sum(int(m.sum()) for m in mask.values()), sum(math.prod(m.shape) for m in mask.values())


def mask_metadata(*, mask: Mask, **fields) -> dict[str, str]:
    """The metadata of a mask written now: `fields` of `MaskRecord`, with the counts and fraction of its tensors."""
    selected, total = mask_counts(mask)
    return MaskRecord(selected=selected, total=total, selected_fraction=selected / max(1, total),
                      unlearn_version=unlearn_cli.__version__, **fields).to_meta()


def mask_bytes(mask: Mask, meta: dict[str, str]) -> bytes:
    import torch

    return dump_safetensors({name: tensor.to(torch.bool) for name, tensor in mask.items()}, meta)


def parse_mask(data: bytes, source: str) -> tuple[Arrays, dict[str, str]]:
    """A mask file's tensors, as numpy bool views of `data` (nothing copied, no torch), and its metadata, checking the
    format and that every tensor is bool, each byte 0 or 1."""
    arrays, meta = safetensors_arrays(data, source)
    if meta.get("format", "").startswith("unlearn-checkpoint/"):
        raise UserError(f"{source}: is a checkpoint, not a mask; compute a mask with `unlearn localize`")
    if meta.get("format") != FORMAT:
        raise UserError(f"{source}: not an unlearn mask (format {meta.get('format')!r}, expected {FORMAT})")
    for name, (dtype, values) in arrays.items():
        if dtype != "BOOL":
            raise UserError(f"{source}: mask tensor {name} has dtype {torch_name(dtype)}; mask tensors must be bool")
        if values.size and int(values.reshape(-1).view(np.uint8).max()) > 1:  # not a bool: counted as more than one
            raise UserError(f"{source}: mask tensor {name} holds bytes other than 0 and 1; the file is damaged, "
                            f"recompute it with `unlearn localize`")
    return {name: values for name, (_, values) in arrays.items()}, meta


def check_mask_fits(mask: Mask, model: nn.Module, source: str) -> None:
    """Names and shapes must match the model's trainable parameters exactly."""
    parameters = dict(model.named_parameters())
    missing = [name for name in parameters if name not in mask]
    unexpected = [name for name in mask if name not in parameters]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"{source}: mask does not fit this model ({what}; {len(missing)} missing, "
                        f"{len(unexpected)} unexpected); compute the mask on this model with `unlearn localize`")
    for name, parameter in parameters.items():
        if mask[name].shape != parameter.shape:
            raise UserError(f"{source}: mask for {name} has shape {tuple(mask[name].shape)}, the parameter has "
                            f"{tuple(parameter.shape)}; compute the mask on this model")


def check_mask_metadata(mask: Mask | Arrays, record: MaskRecord, source: str) -> None:
    """The counts, fraction and budget a mask records must describe its tensors: a mask edited after
    `localize` wrote it would otherwise be reported with numbers it does not have."""
    selected, total = mask_counts(mask)
    if any(value is not None and value != actual for value, actual in ((record.selected, selected),
                                                                        (record.total, total))):
        raise UserError(f"{source}: mask records {record.selected} of {record.total} parameters selected but "
                        f"holds {selected} of {total}; the file was edited, recompute it with `unlearn localize`")
    fraction = record.selected_fraction
    if fraction is not None and abs(fraction - selected / max(1, total)) > 1e-9:
        raise UserError(f"{source}: mask records a selected fraction of {fraction!r} but selects "
                        f"{selected / max(1, total)!r}; the file was edited, recompute it with `unlearn localize`")
    budget = record.budget
    if budget is not None and not (0 < budget <= 1 and selected <= budget_limit(budget, total)):
        raise UserError(f"{source}: mask selects {selected} of {total} parameters, more than its budget {budget!r} "
                        f"allows; the file was edited, recompute it with `unlearn localize`")


@reader("mask")
def read_mask_arrays(path: str) -> MaskFile:
    """Read and validate a mask (`-` for stdin) without torch: its tensors as numpy bool arrays (views of the file's
    bytes), its metadata describing them."""
    source = "stdin" if path == "-" else str(path)
    data = read_input(path, "mask", limit_name="tensor_file_bytes")
    mask, meta = parse_mask(data, source)
    record = MaskRecord.from_meta(meta, source)
    check_mask_metadata(mask, record, source)
    return MaskFile(mask=mask, meta=meta, sha256=sha256_bytes(data), source=source, record=record)


@reader("mask")
def read_mask(path: str, model: nn.Module | None = None) -> MaskFile:
    """Read and validate a mask (`-` for stdin) as `read_mask_arrays` does, its tensors as torch bool tensors, which
    must fit `model` when one is given. Whether it may be used with a checkpoint and a forget set is for
    `unlearn_cli.lineage.check_mask` to say."""
    mask_file = read_mask_arrays(path)
    mask_file.mask = {name: as_tensor("BOOL", values) for name, values in mask_file.mask.items()}
    if model is not None:
        check_mask_fits(mask_file.mask, model, mask_file.source)
    return mask_file
