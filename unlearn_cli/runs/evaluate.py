"""Evaluating checkpoints: read them and check their lineage, then score each one (accuracies, MIA scores, the gaps
to an oracle, parameters changed, cost; with `relearn`, the relearning curves and gap, docs/relearn.md) as the
records of a results file (unlearn-results/1).

Two steps, so that a caller can size its progress display between them: `prepare_evaluation` reads and checks
every input and draws the MIA's shadow sets (nothing is measured yet); `score_checkpoints` measures the oracle
(unless its metrics come from an earlier results file) and each checkpoint, calling `on_step(name)` after each.

Usage:
    from unlearn_cli.evaluate.results import results_document
    from unlearn_cli.runs.evaluate import EvaluateConfig, check_config, prepare_evaluation, score_checkpoints
    cfg = EvaluateConfig(forget="forget.json", oracle="oracle.safetensors")
    check_config(cfg)
    plan = prepare_evaluation(["unlearned.safetensors"], cfg)     # plan.steps: the models score_checkpoints measures
    evaluation = score_checkpoints(plan, on_step=print)            # .records, .oracle_metrics, .mismatch_allowed
    document = results_document(evaluation.records)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from unlearn_cli.cost import reference_units
from unlearn_cli.data import ImageData
from unlearn_cli.engine import select_device
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.keys import SVC_SETTINGS
from unlearn_cli.evaluate.metrics import (Corrective, corrective_view, fraction_changed, model_metrics, oracle_gaps,
                                          shadow_sets)
from unlearn_cli.evaluate.provenance import reused_oracle_metrics, run_identity
from unlearn_cli.evaluate.relearn import RelearnSplit, relearn_curves, relearn_record, split_forget_set
from unlearn_cli.evaluate.results import read_results, result_record
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import ForgetSet, read_forget_set
from unlearn_cli.lineage import check_fits_data, check_oracle, check_parent, data_as_trained, dataset_for
from unlearn_cli.runs.options import EvaluateConfig, check_evaluate_config as check_config  # noqa: F401
from unlearn_cli.tune import halve_test_set


@dataclass
class Inputs:
    """The checkpoints, read and checked against each other, the data and the forget set as they were trained on."""

    checkpoints: list[Checkpoint]
    data: ImageData  # as the models were trained on it (a manipulated forget set's changes applied)
    clean: ImageData  # as the dataset ships
    forget_set: ForgetSet
    oracle: Checkpoint | None
    matches: bool | None  # whether the oracle was trained without exactly this forget set
    parent: Checkpoint | None
    derived: list[bool]  # per checkpoint: unlearned from `parent`
    mismatch_allowed: bool  # --allow-mismatch let something through (recorded in the results)


def load_inputs(models: list[str], cfg: EvaluateConfig) -> Inputs:
    """Read the checkpoints, the oracle, the parent and the forget set, and check that they belong together."""
    checkpoints = [load_checkpoint(path) for path in models]
    reference = checkpoints[0]
    data = dataset_for(reference, cfg.data_root)
    for checkpoint in checkpoints:
        check_fits_data(checkpoint, reference, data, "the model")
    forget_set = read_forget_set(cfg.forget, num_train=data.num_train, dataset=reference.dataset,
                                 allow_other_dataset=cfg.allow_mismatch)
    oracle_checkpoint = matches = None
    if cfg.oracle is not None:
        oracle_checkpoint = load_checkpoint(cfg.oracle)
        check_fits_data(oracle_checkpoint, reference, data, "the oracle")
        matches = check_oracle(oracle_checkpoint, forget_set, cfg.allow_mismatch)
    parent_checkpoint = load_checkpoint(cfg.parent) if cfg.parent is not None else None
    derived = [parent_checkpoint is not None and check_parent(c, parent_checkpoint) for c in checkpoints]
    # the flag is recorded whenever it let something through: an oracle for another forget set, or a
    # forget set made for another dataset
    mismatch_allowed = bool(cfg.allow_mismatch and ((oracle_checkpoint is not None and not matches)
                                                    or forget_set.dataset not in (None, reference.dataset)))
    clean = data  # a manipulated forget set is measured on the training set as the models were trained on it
    data, forget_set = data_as_trained(data, forget_set, [c for c in (*checkpoints, oracle_checkpoint,
                                                                      parent_checkpoint) if c is not None],
                                       unlearning=False)
    return Inputs(checkpoints, data, clean, forget_set, oracle_checkpoint, matches, parent_checkpoint, derived,
                  mismatch_allowed)


def _test_part(data: ImageData, cfg: EvaluateConfig) -> tuple[ImageData, dict | None]:
    """The data with the test examples `--test-part` asks for, and what the results record of the choice."""
    if cfg.test_part == "reported":  # leave out the test examples tuning scored candidates on
        _, part = halve_test_set(data.test_labels, cfg.tune_seed)
        return data.test_subset(part), {"part": "reported", "tune_seed": cfg.tune_seed, "size": len(part)}
    if cfg.test_part != "all":
        raise UserError(f"--test-part {cfg.test_part!r}: choose all or reported")
    return data, None


@dataclass
class Plan:
    """Everything scoring needs, read, checked and drawn: what `score_checkpoints` measures."""

    cfg: EvaluateConfig
    target: torch.device
    inputs: Inputs
    data: ImageData  # the inputs' data, its test set restricted to --test-part
    corrective: Corrective | None
    members: torch.Tensor  # the MIA's shadow sets
    nonmembers: torch.Tensor
    mia_setting: dict
    reused: dict | None  # the oracle's metrics from --oracle-results
    relearn_split: RelearnSplit | None  # with --relearn: the forget set's part finetuned on and the rest scored

    @property
    def steps(self) -> int:
        """The models `score_checkpoints` measures: each checkpoint, and the oracle unless its metrics are reused."""
        return len(self.inputs.checkpoints) + (self.inputs.oracle is not None and self.reused is None)


def prepare_evaluation(models: list[str], cfg: EvaluateConfig) -> Plan:
    """Read and check the inputs, choose the test part and draw the MIA's shadow sets (seeded by `cfg.seed`)."""
    target = select_device(cfg.device)
    inputs = load_inputs(models, cfg)
    data, test_part = _test_part(inputs.data, cfg)
    forget_set = inputs.forget_set
    corrective = corrective_view(inputs.clean, data, forget_set, cfg.seed)
    members, nonmembers = shadow_sets(data, forget_set.indices, cfg.seed)
    mia_setting = {"members": len(members), "nonmembers": len(nonmembers), "forget": len(forget_set.indices),
                   "seed": cfg.seed, "svc": dict(SVC_SETTINGS), **({"test_part": test_part} if test_part else {})}
    reused = None
    if cfg.oracle_results is not None:
        reused = reused_oracle_metrics(read_results(cfg.oracle_results), cfg.oracle_results, inputs.oracle,
                                       forget_set, mia_setting)
    relearn_split = split_forget_set(forget_set.indices, cfg) if cfg.relearn else None
    return Plan(cfg, target, inputs, data, corrective, members, nonmembers, mia_setting, reused, relearn_split)


@dataclass
class Evaluation:
    records: list[dict]  # one RESULT object per checkpoint, in the order given
    oracle_metrics: dict | None
    mismatch_allowed: bool


def _measure(plan: Plan, checkpoint: Checkpoint) -> dict:
    metrics = model_metrics(checkpoint.model.to(plan.target), plan.data, plan.inputs.forget_set.indices,
                            plan.members, plan.nonmembers, plan.cfg.seed, plan.cfg.batch_size, plan.target,
                            plan.corrective)
    checkpoint.model.cpu()
    return metrics


def _relearn(plan: Plan, checkpoint: Checkpoint) -> dict[float, list[float]]:
    """The relearning curves of a copy of the checkpoint's model (the model itself is left as it is)."""
    return relearn_curves(checkpoint.model, plan.data, plan.relearn_split, plan.cfg, plan.target,
                          plan.cfg.batch_size)


def _oracle_block(plan: Plan, on_step: Callable[[str], None]) -> dict | None:
    """The results' `oracle` object: the oracle's identity and metrics, measured now unless reused."""
    oracle = plan.inputs.oracle
    if oracle is None:
        return None
    block = {"source": oracle.source, "sha256": oracle.sha256, "seed": oracle.provenance.seed,
             "excluded_sha256": oracle.provenance.excluded_sha256, "matches_forget_set": plan.inputs.matches,
             "metrics": _measure(plan, oracle) if plan.reused is None else plan.reused,
             "metrics_from": plan.cfg.oracle_results, "wall_time_s": oracle.wall_time_s}
    if plan.reused is None:
        on_step(Path(oracle.source).name)
    return block


def _model_fields(checkpoint: Checkpoint) -> dict:
    return {"source": checkpoint.source, "sha256": checkpoint.sha256, "arch": checkpoint.arch,
            "dataset": checkpoint.dataset, "num_classes": checkpoint.num_classes}


def _cost_fields(checkpoint: Checkpoint, retain_size: int, forget_sha256: str) -> dict | None:
    """The `cost` of a result: what the checkpoint records of its work, against retraining without the forget set
    with the recipe it (an original or oracle) or its parent (an unlearned model) was trained with. An original
    unlearned nothing: its cost is 0 (no unlearning), whatever its own training took."""
    recorded = checkpoint.cost
    if recorded.work is None:
        return None
    reference = reference_units(checkpoint.provenance.method, checkpoint.config, recorded, retain_size)
    if checkpoint.provenance.method is None and checkpoint.provenance.excluded_sha256 != forget_sha256:
        return {"work": 0, "unlearn_work": 0, "localize_work": None, "retrain_work": reference,
                "x_retrain": 0.0 if reference else None, "cap": None}
    return {"work": recorded.pipeline_units, "unlearn_work": recorded.work.units,
            "localize_work": recorded.localize_units, "retrain_work": reference,
            "x_retrain": recorded.pipeline_units / reference if reference else None,
            "cap": checkpoint.config.get("max_cost") if checkpoint.provenance.method else None}


def _record(plan: Plan, checkpoint: Checkpoint, is_derived: bool, oracle_block: dict | None,
            oracle_relearn: dict[float, list[float]] | None) -> dict:
    """One checkpoint measured, as a RESULT object (with `oracle_relearn`, its relearning against the oracle's)."""
    inputs, forget_set = plan.inputs, plan.inputs.forget_set
    parent = inputs.parent
    metrics = _measure(plan, checkpoint)
    relearn = None if oracle_relearn is None else relearn_record(_relearn(plan, checkpoint), oracle_relearn,
                                                                 plan.relearn_split, plan.cfg)
    return result_record(
        model=_model_fields(checkpoint), **run_identity(checkpoint, forget_set), forget=forget_set.fields(),
        metrics=metrics, oracle=oracle_block,
        comparison=oracle_gaps(metrics, oracle_block["metrics"]) if oracle_block else None,
        allow_mismatch=inputs.mismatch_allowed,
        parent={"source": parent.source, "sha256": parent.sha256} if parent else None,
        fraction_changed=fraction_changed(checkpoint.model.named_parameters(),
                                          parent.model.named_parameters()) if is_derived else None,
        wall_time_s=checkpoint.wall_time_s, mask_sha256=checkpoint.provenance.mask_sha256,
        mia={key: value for key, value in plan.mia_setting.items() if key != "svc"},
        cost=_cost_fields(checkpoint, plan.data.num_train - len(forget_set.indices), forget_set.sha256),
        relearn=relearn)


def score_checkpoints(plan: Plan, on_step: Callable[[str], None] = lambda name: None) -> Evaluation:
    """Measure the oracle (with --relearn, relearn it too), then each checkpoint in order; `on_step(file name)`
    after each model measured."""
    oracle_block = _oracle_block(plan, on_step)
    oracle_relearn = _relearn(plan, plan.inputs.oracle) if plan.relearn_split is not None else None
    records = []
    for checkpoint, is_derived in zip(plan.inputs.checkpoints, plan.inputs.derived):
        records.append(_record(plan, checkpoint, is_derived, oracle_block, oracle_relearn))
        on_step(Path(checkpoint.source).name)
    return Evaluation(records, oracle_block["metrics"] if oracle_block else None, plan.inputs.mismatch_allowed)
