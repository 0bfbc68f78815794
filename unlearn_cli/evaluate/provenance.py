"""What `evaluate` concludes from checkpoints' provenance: may they be compared, what run is each, and
may an oracle's metrics be reused from an earlier results file.

Usage:
    check_fits_data(checkpoint, reference, data, "the model")
    matches = check_oracle(oracle, forget_set, allow_mismatch=False)    # True, or a UserError
    run_identity(checkpoint, forget_set)    # {"method", "strategy", "budget", "seed"} for `unlearn report`
    reused_oracle_metrics(records, "original.json", oracle, forget_set, mia_setting)
"""

from __future__ import annotations

import math

from unlearn_cli.data import ImageData
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import Checkpoint
from unlearn_cli.io.forget import ForgetSet


def check_fits_data(checkpoint: Checkpoint, reference: Checkpoint, data: ImageData, role: str) -> None:
    """The checkpoint must be trained on the reference's dataset and match its classes and input shape."""
    if checkpoint.describe_data() != reference.describe_data():
        raise UserError(f"{checkpoint.source}: {role} was trained on {checkpoint.describe_data()}, but "
                        f"{reference.source} on {reference.describe_data()}; compare models of the same dataset")
    if checkpoint.num_classes != data.num_classes:
        raise UserError(f"{checkpoint.source}: {role} has {checkpoint.num_classes} classes but dataset {data.name} has "
                        f"{data.num_classes}; evaluate it on the data it was trained for")
    if tuple(checkpoint.input_shape) != tuple(data.input_shape):
        raise UserError(f"{checkpoint.source}: {role} takes inputs of shape {list(checkpoint.input_shape)} but dataset "
                        f"{data.name} has {list(data.input_shape)}; evaluate it on the data it was trained for")


def check_oracle(oracle: Checkpoint, forget: ForgetSet, allow_mismatch: bool) -> bool:
    """True when the oracle was trained without exactly this forget set; otherwise an error (or False if allowed)."""
    excluded = oracle.provenance.excluded_sha256
    if excluded == forget.sha256:
        return True
    if allow_mismatch:
        return False
    if excluded is None:
        raise UserError(f"{oracle.source}: the oracle was trained on the full training set (no excluded_sha256); "
                        f"train it with `unlearn train --exclude {forget.source}`, or pass --allow-mismatch")
    raise UserError(f"{oracle.source}: the oracle was trained without another forget set (excluded_sha256 "
                    f"{excluded[:12]}…, {forget.source} is {forget.sha256[:12]}…); retrain it with "
                    f"`unlearn train --exclude {forget.source}`, or pass --allow-mismatch")


def check_parent(checkpoint: Checkpoint, parent: Checkpoint) -> bool:
    """True when `checkpoint` is `parent` or derived from it; False when it records no parent; else an error."""
    recorded = checkpoint.provenance.parent_sha256
    if checkpoint.sha256 == parent.sha256 or recorded == parent.sha256:
        return True
    if recorded is None:
        return False
    raise UserError(f"{checkpoint.source}: was unlearned from another checkpoint (parent_sha256 {recorded[:12]}…, "
                    f"{parent.source} is {parent.sha256[:12]}…); pass its parent with --parent")


def run_identity(checkpoint: Checkpoint, forget: ForgetSet) -> dict:
    """method, strategy, budget and seed of a checkpoint, for grouping runs in `unlearn report`.

    A checkpoint without a method is "retrain" when it was trained without this forget set, else "original";
    the strategy and budget come from the mask it used, or from its config (a mask written by `localize`).
    """
    provenance, config = checkpoint.provenance, checkpoint.config
    method = provenance.method or ("retrain" if provenance.excluded_sha256 == forget.sha256 else "original")
    strategy = provenance.mask_strategy or (config.get("strategy") if isinstance(config.get("strategy"), str) else None)
    budget = provenance.mask_budget
    if budget is None and "mask_budget" not in checkpoint.meta:
        configured = config.get("budget")
        is_number = isinstance(configured, (int, float)) and not isinstance(configured, bool)
        budget = float(configured) if is_number and math.isfinite(configured) else None
    return {"method": method, "strategy": strategy, "budget": budget, "seed": provenance.seed}


def reused_oracle_metrics(records: list[dict], source: str, oracle: Checkpoint, forget: ForgetSet, mia: dict) -> dict:
    """The oracle's metrics from the RESULT objects of an earlier results file `source`: measured on the same
    oracle file, forget set and MIA shadow sets (seed and sizes), so they are the numbers measuring it again
    would give."""
    for record in records:
        shadow = record.get("mia") if isinstance(record.get("mia"), dict) else {}
        if (record["forget"]["sha256"] != forget.sha256 or any(shadow.get(key) != mia[key] for key in mia)
                or shadow.get("test_part") != mia.get("test_part")):  # measured on another part of the test set
            continue
        if record["oracle"] is not None and record["oracle"]["sha256"] == oracle.sha256:
            measured = record["oracle"]["metrics"]
        elif record["model"]["sha256"] == oracle.sha256:  # the oracle evaluated as a model
            measured = record["metrics"]
        else:
            continue
        return {key: math.nan if value is None else value for key, value in measured.items()}
    raise UserError(f"{source}: holds no measurement of oracle {oracle.source} ({oracle.sha256[:12]}…) on forget set "
                    f"{forget.source} with MIA seed {mia['seed']}; pass a results file of `unlearn evaluate --oracle "
                    f"{oracle.source}` with the same --forget and --seed, or leave out --oracle-results")
