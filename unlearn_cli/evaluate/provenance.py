"""What `evaluate` concludes from checkpoints' provenance: what run is each, and may an oracle's metrics be
reused from an earlier results file (which files may be compared at all is `unlearn_cli.lineage`'s).

Usage:
    run_identity(checkpoint, forget_set)    # {"method", "strategy", "budget", "seed"} for `unlearn report`
    reused_oracle_metrics(records, "original.json", oracle, forget_set, mia_setting)
"""

from __future__ import annotations

import math

from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import Checkpoint
from unlearn_cli.io.forget import ForgetSet


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
