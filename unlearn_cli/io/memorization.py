"""Reference-estimate files (`unlearn-memorization/1`, JSON): each training example's memorization estimated over a
pool of models trained on parts of the training set (docs/memorization.md, docs/files.md).

Usage:
    data = memorization_json(estimate, correct, members, dataset="fashion-mnist", dataset_kwargs={"train_subset": 2000},
                             models=[{"sha256": ..., "seed": 0, "excluded_sha256": ...}, ...])
    reference = read_memorization_file("reference.json")   # checked; values float64 [N], NaN: none
    reference.memorization, reference.models, reference.sha256
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_bytes
from unlearn_cli.limits import load_json
from unlearn_cli.streams import read_input, reader

FORMAT = "unlearn-memorization/1"
ESTIMATES = ("memorization", "memorization_correct")  # on the confidence, and on 0/1 correctness


@dataclass
class ReferenceFile:
    source: str
    sha256: str  # of the file's bytes
    dataset: str
    dataset_kwargs: dict
    memorization: torch.Tensor  # float64 [N_train], the estimate on the confidence; NaN: a side was empty
    memorization_correct: torch.Tensor  # float64 [N_train], the same on correctness
    members: torch.Tensor  # int64 [N_train]: how many of the models trained on each example
    models: list[dict]  # per model: sha256 (of its checkpoint), seed, excluded_sha256

    @property
    def num_train(self) -> int:
        return len(self.memorization)


def _listed(values: torch.Tensor) -> list:
    return [None if not math.isfinite(value) else value for value in values.double().tolist()]


def memorization_json(memorization: torch.Tensor, memorization_correct: torch.Tensor, members: torch.Tensor, *,
                      dataset: str, dataset_kwargs: dict, models: list[dict], extra: dict | None = None) -> bytes:
    """The reference-estimate file: the estimates per training example (null where a side was empty), how many models
    trained on each, the models' identities, and `extra` (e.g. the estimate's reliability) under `notes`."""
    document = {"format": FORMAT, "dataset": dataset, "dataset_kwargs": dataset_kwargs,
                "num_train": len(memorization), "models": models, "members": [int(m) for m in members],
                "memorization": _listed(memorization), "memorization_correct": _listed(memorization_correct),
                "notes": extra or {}}
    return (json.dumps(document, indent=1) + "\n").encode()


def _estimate(document: dict, key: str, num_train: int, source: str) -> torch.Tensor:
    values = document.get(key)
    if not isinstance(values, list) or len(values) != num_train:
        raise UserError(f"{source}: '{key}' must be a list of {num_train} values (num_train), one per training example")
    if not all(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and -1 <= value <= 1) for value in values):
        raise UserError(f"{source}: '{key}' holds a value that is neither null nor a number in [-1, 1]; "
                        f"the file is damaged")
    return torch.tensor([math.nan if value is None else float(value) for value in values], dtype=torch.float64)


@reader("reference-estimate file")
def read_memorization_file(path: str) -> ReferenceFile:
    """A reference-estimate file, checked: its format, dataset, one value per training example in each estimate
    (null or a number in [-1, 1]), a member count per example, and a sha256 per model."""
    source = "stdin" if path == "-" else str(path)
    data = read_input(path, "reference-estimate file")  # within the JSON byte limit
    document = load_json(data, source, "reference-estimate")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise UserError(f"{source}: not a reference-estimate file (format {str(found)[:40]!r}, expected {FORMAT})")
    num_train = document.get("num_train")
    if not isinstance(num_train, int) or isinstance(num_train, bool) or num_train < 1:
        raise UserError(f"{source}: 'num_train' must be a positive integer")
    if not isinstance(document.get("dataset"), str) or not isinstance(document.get("dataset_kwargs"), dict):
        raise UserError(f"{source}: 'dataset' must be a name and 'dataset_kwargs' an object")
    memorization, correct = (_estimate(document, key, num_train, source) for key in ESTIMATES)
    members = document.get("members")
    if not isinstance(members, list) or len(members) != num_train or not all(
            isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in members):
        raise UserError(f"{source}: 'members' must be a list of {num_train} counts, one per training example")
    models = document.get("models")
    if not isinstance(models, list) or not models or not all(
            isinstance(model, dict) and isinstance(model.get("sha256"), str) for model in models):
        raise UserError(f"{source}: 'models' must be a non-empty list of objects with a 'sha256'")
    return ReferenceFile(source, sha256_bytes(data), document["dataset"], document["dataset_kwargs"], memorization,
                         correct, torch.tensor(members, dtype=torch.long), models)
