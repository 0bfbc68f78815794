"""Mask files: one bool tensor per trainable parameter, keyed by `named_parameters()` name (docs/files.md).

Usage:
    data = mask_bytes(mask, mask_metadata(strategy="del", ..., model_sha256=checkpoint.sha256))
    mask_file = read_mask("mask.safetensors", model, model_sha256=checkpoint.sha256)   # or "-" for stdin
    mask_file.mask, mask_file.meta, mask_file.sha256
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch
from torch import nn

import unlearn_cli
from unlearn_cli.cost import Work
from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.io.safetensors_file import dump_safetensors, parse_safetensors
from unlearn_cli.limits import INT64_MAX, load_json_field
from unlearn_cli.streams import read_input, reader
from unlearn_cli.localize.budget import budget_limit

FORMAT = "unlearn-mask/1"
Mask = dict[str, torch.Tensor]


@dataclass
class MaskFile:
    mask: Mask
    meta: dict[str, str]  # as stored: strings
    sha256: str  # of the file's bytes
    source: str
    typed: dict = field(default_factory=dict)  # the metadata with numbers as numbers (typed_mask_metadata)

    @property
    def localize_units(self) -> int | None:
        """The work of the localization that computed it (None: not recorded)."""
        forward, backward = (self.typed.get(key) for key in _MASK_WORK)
        return None if forward is None or backward is None else Work(forward, backward).units


def mask_counts(mask: Mask) -> tuple[int, int]:
    """(selected scalars, total scalars)."""
    return sum(int(m.sum()) for m in mask.values()), sum(m.numel() for m in mask.values())


def mask_metadata(*, strategy: str, criterion: str, granularity: str, budget: float | None, mask: Mask,
                  model_sha256: str, forget_sha256: str, seed: int, config: dict | None = None,
                  **extra: str) -> dict[str, str]:
    selected, total = mask_counts(mask)
    meta = {
        "format": FORMAT, "strategy": strategy, "criterion": criterion, "granularity": granularity,
        "budget": "" if budget is None else repr(float(budget)), "selected": str(selected), "total": str(total),
        "selected_fraction": repr(selected / max(1, total)), "model_sha256": model_sha256,
        "forget_sha256": forget_sha256, "seed": str(seed), "unlearn_version": unlearn_cli.__version__,
    }
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    meta.update({key: str(value) for key, value in extra.items()})
    return meta


def mask_bytes(mask: Mask, meta: dict[str, str]) -> bytes:
    return dump_safetensors({name: tensor.to(torch.bool) for name, tensor in mask.items()}, meta)


def parse_mask(data: bytes, source: str) -> tuple[Mask, dict[str, str]]:
    """Read a mask file's tensors and metadata, checking the format and that every tensor is bool."""
    tensors, meta = parse_safetensors(data, source)
    if meta.get("format", "").startswith("unlearn-checkpoint/"):
        raise UserError(f"{source}: is a checkpoint, not a mask; compute a mask with `unlearn localize`")
    if meta.get("format") != FORMAT:
        raise UserError(f"{source}: not an unlearn mask (format {meta.get('format')!r}, expected {FORMAT})")
    for name, tensor in tensors.items():
        if tensor.dtype != torch.bool:
            raise UserError(f"{source}: mask tensor {name} has dtype {tensor.dtype}; mask tensors must be bool")
    return tensors, meta


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


def check_mask_metadata(mask: Mask, typed: dict, source: str) -> None:
    """The counts, fraction and budget a mask records must describe its tensors: a mask edited after
    `localize` wrote it would otherwise be reported with numbers it does not have."""
    selected, total = mask_counts(mask)
    recorded = {key: typed.get(key) for key in ("selected", "total")}
    if any(value is not None and value != actual for value, actual in zip(recorded.values(), (selected, total))):
        raise UserError(f"{source}: mask records {recorded['selected']} of {recorded['total']} parameters selected but "
                        f"holds {selected} of {total}; the file was edited, recompute it with `unlearn localize`")
    fraction = typed.get("selected_fraction")
    if fraction is not None and abs(fraction - selected / max(1, total)) > 1e-9:
        raise UserError(f"{source}: mask records a selected fraction of {fraction!r} but selects "
                        f"{selected / max(1, total)!r}; the file was edited, recompute it with `unlearn localize`")
    budget = typed.get("budget")
    if budget is not None and not (0 < budget <= 1 and selected <= budget_limit(budget, total)):
        raise UserError(f"{source}: mask selects {selected} of {total} parameters, more than its budget {budget!r} "
                        f"allows; the file was edited, recompute it with `unlearn localize`")


@reader("mask")
def read_mask(path: str, model: nn.Module | None = None, model_sha256: str | None = None,
              allow_other_model: bool = False, forget_sha256: str | None = None,
              allow_other_forget_set: bool = False) -> MaskFile:
    """Read and validate a mask (`-` for stdin): its metadata must describe its tensors; one computed on another
    checkpoint (or, given `forget_sha256`, for another forget set) is refused unless allowed."""
    source = "stdin" if path == "-" else str(path)
    data = read_input(path, "mask", limit_name="tensor_file_bytes")
    mask, meta = parse_mask(data, source)
    typed = typed_mask_metadata(meta, source)
    check_mask_metadata(mask, typed, source)
    if model is not None:
        check_mask_fits(mask, model, source)
    if model_sha256 is not None and meta.get("model_sha256") != model_sha256 and not allow_other_model:
        raise UserError(f"{source}: mask was computed on another checkpoint (model_sha256 {meta.get('model_sha256', '?')[:12]}…, "
                        f"this one {model_sha256[:12]}…); recompute it, or pass --allow-other-model if that is deliberate")
    if forget_sha256 is not None and meta.get("forget_sha256") != forget_sha256 and not allow_other_forget_set:
        raise UserError(f"{source}: mask was computed for another forget set (forget_sha256 "
                        f"{meta.get('forget_sha256', '?')[:12]}…, this one {forget_sha256[:12]}…); recompute it with "
                        f"`unlearn localize --forget` on this forget set, or pass --allow-mismatch if that is deliberate")
    return MaskFile(mask=mask, meta=meta, sha256=sha256_bytes(data), source=source, typed=typed)


_MASK_NUMBERS = ("budget", "selected_fraction", "topk")  # "" (no budget) is null
_MASK_WORK = ("work_forward", "work_backward")  # examples the localization forwarded and back-propagated
_MASK_INTEGERS = ("selected", "total", "seed", *_MASK_WORK)


def typed_mask_metadata(meta: dict[str, str], source: str = "mask") -> dict:
    """A mask's metadata for JSON: numbers as numbers (an empty budget as null), `config` as an object.

    Every other key keeps its string value; a value that does not read as its type is a UserError naming it.
    """
    typed: dict = dict(meta)
    for key in _MASK_NUMBERS + _MASK_INTEGERS + ("config",):
        if key not in meta:
            continue
        text = meta[key]
        try:
            if key == "config":
                value = load_json_field(text, source, "mask metadata 'config'")
                valid = isinstance(value, dict)
            elif key in _MASK_INTEGERS:
                value = int(text)
                valid = key not in _MASK_WORK or 0 <= value <= INT64_MAX
            elif text == "" and key == "budget":
                value = None
                valid = True
            else:
                value = float(text)
                valid = math.isfinite(value)
        except ValueError:  # json.JSONDecodeError is a ValueError
            valid = False
        if not valid:
            kind = "a JSON object" if key == "config" else "an integer" if key in _MASK_INTEGERS else "a finite number"
            raise UserError(f"{source}: mask metadata {key!r} is {text[:40]!r}, not {kind}; the file is damaged, "
                            f"recompute it with `unlearn localize`")
        typed[key] = value
    return typed
