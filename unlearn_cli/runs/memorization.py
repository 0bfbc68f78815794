"""Memorization scores of a training set, from either source that `split --kind memorization` and `audit
--memorization` accept, checked against the data they are used on (docs/memorization.md):

- a checkpoint of `unlearn train`: its recorded training-time confidence, as the proxy 1 − confidence;
- a reference-estimate file (`unlearn-memorization/1`): the estimate over a pool of models trained on halves.

Usage:
    scores = read_memorization_source("proxy.safetensors", "--model")
    check_scores_fit(scores, "fashion-mnist", {"train_subset": 2000}, num_train=2000)
    check_cross_fit(scores, pools_checkpoints)     # refuses scores computed from a model the audit scores
    scores.values, scores.levels(), scores.record()
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np
import torch

from unlearn_cli.data.splits import terciles
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.memorization import memorization_proxy
from unlearn_cli.io.checkpoint import Checkpoint, describe_data, read_checkpoint_file
from unlearn_cli.io.memorization import read_memorization_file

PROXY, REFERENCE = "proxy", "reference"
MEANINGS = {PROXY: "1 − the mean confidence on the label over training (recorded by `unlearn train`)",
            REFERENCE: "mean confidence of the models that trained on the example − of those that did not"}


@dataclass
class MemorizationScores:
    """One memorization score per training example (higher: more memorized), and where it came from."""

    values: torch.Tensor  # float64 [N_train]; NaN: not scored (the model never trained on the example)
    kind: str  # PROXY or REFERENCE
    source: str
    sha256: str  # of the source file
    dataset: str
    dataset_kwargs: dict
    models: set[str]  # sha256 of the checkpoints the scores were computed from

    def describe_data(self) -> str:
        return describe_data(self.dataset, self.dataset_kwargs)

    def levels(self) -> torch.Tensor:
        """The tercile of each training example (0 low, 1 mid, 2 high; -1 unscored): `splits.terciles`."""
        return terciles(self.values)

    def record(self) -> dict:
        """What a forget set or an audit records of the scores' origin."""
        return {"source": self.source, "sha256": self.sha256, "estimate": self.kind, "definition": MEANINGS[self.kind]}


def read_memorization_source(path: str, option: str) -> MemorizationScores:
    """The scores of a checkpoint that records its training-time confidence, or of a reference-estimate file (told
    apart by their content); `option` names the flag in messages."""
    if _is_json(path):  # read within the JSON limit, not a checkpoint's
        reference = read_memorization_file(path)
        return MemorizationScores(reference.memorization, REFERENCE, reference.source, reference.sha256,
                                  reference.dataset, reference.dataset_kwargs,
                                  {model["sha256"] for model in reference.models})
    checkpoint = read_checkpoint_file(path)  # the file checked; its weights are not needed
    if checkpoint.training_confidence is None:
        raise UserError(f"{checkpoint.source}: records no training-time confidence, so {option} has no memorization "
                        f"proxy to rank by; train it with `unlearn train` (--record-memorization is the default)")
    return MemorizationScores(memorization_proxy(checkpoint.training_confidence.astype(np.float64)), PROXY, checkpoint.source,
                              checkpoint.sha256, checkpoint.dataset, checkpoint.dataset_kwargs, {checkpoint.sha256})


def _is_json(path: str) -> bool:
    """Whether a regular file starts like JSON (a reference-estimate file) rather than like safetensors (a
    checkpoint: an 8-byte length, then its JSON header). Anything else (stdin, a pipe, a device, a missing path) is
    left to the checkpoint reader, whose message names it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as file:
            return file.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False


def check_scores_fit(scores: MemorizationScores, dataset: str, dataset_kwargs: dict, num_train: int) -> None:
    """The scores must be of this dataset, with these options (the same training subset), one per training example."""
    if (scores.dataset, scores.dataset_kwargs) != (dataset, dataset_kwargs):
        raise UserError(f"{scores.source}: scores the training set of {scores.describe_data()}, not of "
                        f"{describe_data(dataset, dataset_kwargs)}; "
                        f"give memorization scores of the same dataset and options")
    if len(scores.values) != num_train:
        raise UserError(f"{scores.source}: holds {len(scores.values)} scores, the training set has {num_train} "
                        f"examples; give memorization scores of this training set")


def check_cross_fit(scores: MemorizationScores, scored: dict[str, list[Checkpoint]]) -> None:
    """Refuse scores computed from a model the audit scores (`scored`: option -> its checkpoints), or from a parent
    of one: terciles drawn from the same models' noise they are measured with would sort that noise, not the
    examples."""
    for option, checkpoints in scored.items():
        for checkpoint in checkpoints:
            if checkpoint.sha256 in scores.models:
                raise UserError(f"{scores.source}: its {scores.kind} comes from {checkpoint.source}, a model of "
                                f"{option}; give --memorization a model the audit does not score (cross-fit)")
    for option, checkpoints in scored.items():
        for checkpoint in checkpoints:
            if checkpoint.provenance.parent_sha256 in scores.models:
                raise UserError(f"{scores.source}: its {scores.kind} comes from the model {checkpoint.source} of "
                                f"{option} was unlearned from; give --memorization a model the audit does not "
                                f"score (cross-fit)")
