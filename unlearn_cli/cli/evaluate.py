"""`unlearn evaluate`: accuracies, MIA scores and gaps to the oracle for one or more checkpoints.

Usage:
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors --json results.json
    unlearn evaluate original.safetensors a.safetensors b.safetensors --forget forget.json --parent original.safetensors
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors \
        --oracle-results original.json --json results.json    # the oracle's metrics from an earlier run
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearn_cli.cli.common import (ConfigOption, DataRootOption, DeviceOption, QuietOption, SeedOption, dataset_for,
                                    handle_errors, print_json, stderr)
from unlearn_cli.config import resolve_config
from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import retain_indices
from unlearn_cli.engine import predict, select_device
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.metrics import (evaluate_outputs, fraction_changed, metric_keys, metric_label,
                                          oracle_gaps)
from unlearn_cli.evaluate.mia import SVC_SETTINGS, shadow_split
from unlearn_cli.evaluate.results import read_results, result_record, results_document
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import ForgetSet, read_forget_set
from unlearn_cli.io.streams import check_writable


@dataclass
class EvaluateConfig:
    forget: Optional[str] = None  # forget-set file the models were unlearned on (required)
    oracle: Optional[str] = None  # checkpoint retrained without exactly this forget set
    parent: Optional[str] = None  # checkpoint the models were unlearned from (parameters changed)
    data_root: Optional[str] = None
    batch_size: int = 512  # inference batch size
    seed: int = 0  # draws the MIA's shadow members
    device: str = "auto"
    allow_mismatch: bool = False  # accept an oracle trained without another forget set (recorded)
    oracle_results: Optional[str] = None  # an earlier results file holding this oracle's metrics (not re-measured)


def _describe_data(checkpoint: Checkpoint) -> str:
    options = checkpoint.dataset_kwargs
    return checkpoint.meta["dataset"] + (f" {json.dumps(options, sort_keys=True)}" if options else "")


def _check_fits_data(checkpoint: Checkpoint, reference: Checkpoint, data: ImageData, role: str) -> None:
    """The checkpoint must be trained on the reference's dataset and match its classes and input shape."""
    if _describe_data(checkpoint) != _describe_data(reference):
        raise UserError(f"{checkpoint.source}: {role} was trained on {_describe_data(checkpoint)}, but "
                        f"{reference.source} on {_describe_data(reference)}; compare models of the same dataset")
    classes = int(checkpoint.meta["num_classes"])
    if classes != data.num_classes:
        raise UserError(f"{checkpoint.source}: {role} has {classes} classes but dataset {data.name} has "
                        f"{data.num_classes}; evaluate it on the data it was trained for")
    shape = tuple(json.loads(checkpoint.meta["input_shape"]))
    if shape != tuple(data.input_shape):
        raise UserError(f"{checkpoint.source}: {role} takes inputs of shape {list(shape)} but dataset {data.name} "
                        f"has {list(data.input_shape)}; evaluate it on the data it was trained for")


def _check_oracle(oracle: Checkpoint, forget: ForgetSet, allow_mismatch: bool) -> bool:
    """True when the oracle was trained without exactly this forget set; otherwise an error (or False if allowed)."""
    excluded = oracle.meta.get("excluded_sha256")
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


def _check_parent(checkpoint: Checkpoint, parent: Checkpoint) -> bool:
    """True when `checkpoint` is `parent` or derived from it; False when it records no parent; else an error."""
    recorded = checkpoint.meta.get("parent_sha256")
    if checkpoint.sha256 == parent.sha256 or recorded == parent.sha256:
        return True
    if recorded is None:
        return False
    raise UserError(f"{checkpoint.source}: was unlearned from another checkpoint (parent_sha256 {recorded[:12]}…, "
                    f"{parent.source} is {parent.sha256[:12]}…); pass its parent with --parent")


def _reused_oracle_metrics(path: str, oracle: Checkpoint, forget: ForgetSet, mia: dict) -> dict:
    """The oracle's metrics from an earlier results file: measured on the same oracle file, forget set and MIA
    shadow sets (seed and sizes), so they are the numbers measuring it again would give."""
    for record in read_results(path):
        shadow = record.get("mia") if isinstance(record.get("mia"), dict) else {}
        if record["forget"]["sha256"] != forget.sha256 or any(shadow.get(key) != mia[key] for key in mia):
            continue
        if record["oracle"] is not None and record["oracle"]["sha256"] == oracle.sha256:
            measured = record["oracle"]["metrics"]
        elif record["model"]["sha256"] == oracle.sha256:  # the oracle evaluated as a model
            measured = record["metrics"]
        else:
            continue
        return {key: math.nan if value is None else value for key, value in measured.items()}
    raise UserError(f"{path}: holds no measurement of oracle {oracle.source} ({oracle.sha256[:12]}…) on forget set "
                    f"{forget.source} with MIA seed {mia['seed']}; pass a results file of `unlearn evaluate --oracle "
                    f"{oracle.source}` with the same --forget and --seed, or leave out --oracle-results")


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _identity(checkpoint: Checkpoint, forget: ForgetSet) -> dict:
    """method, strategy, budget and seed of a checkpoint, for grouping runs in `unlearn report`."""
    meta, config = checkpoint.meta, checkpoint.config
    method = meta.get("method") or ("retrain" if meta.get("excluded_sha256") == forget.sha256 else "original")
    strategy = meta.get("mask_strategy") or (config.get("strategy") if isinstance(config.get("strategy"), str) else None)
    budget = _number(meta.get("mask_budget"))
    if budget is None and "mask_budget" not in meta:
        budget = _number(config.get("budget"))
    seed = meta.get("seed")
    return {"method": method, "strategy": strategy, "budget": budget,
            "seed": int(seed) if seed is not None and seed.lstrip("-").isdigit() else None}


def _model_fields(checkpoint: Checkpoint) -> dict:
    return {"source": checkpoint.source, "sha256": checkpoint.sha256, "arch": checkpoint.meta["arch"],
            "dataset": checkpoint.meta["dataset"], "num_classes": int(checkpoint.meta["num_classes"])}


@contextlib.contextmanager
def _progress(total: int, quiet: bool):
    """Yields `advance(name)`: one step per evaluated checkpoint on a rich progress bar."""
    if quiet:
        yield lambda name: None
        return
    columns = [TextColumn("[bold]evaluate"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[name]}"), TimeElapsedColumn()]
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("evaluate", total=total, name="")
        yield lambda name: progress.update(task, advance=1, name=name)


def _render(records: list[dict], oracle_metrics: dict | None) -> Table:
    table = Table(title="unlearn evaluate (metrics in %; Δ = |model − oracle|)")
    table.add_column("metric")
    if oracle_metrics is not None:
        table.add_column("oracle", justify="right")
    for record in records:
        label = record["method"] + (f" {record['strategy']}" if record["strategy"] else "") + (
            f" b={record['budget']:g}" if record["budget"] is not None else "")
        table.add_column(f"{Path(record['model']['source']).name}\n{label}", justify="right")

    def cell(value, gap=None, digits=2):
        if value is None:
            return "—"
        return f"{value:.{digits}f}" + (f" (Δ{gap:.2f})" if gap is not None else "")

    for key in metric_keys():
        row = [metric_label(key)] + ([cell(oracle_metrics[key])] if oracle_metrics is not None else [])
        row += [cell(r["metrics"][key], (r["gaps"] or {}).get(key)) for r in records]
        table.add_row(*row)
    summary_rows = [("average gap", "average_gap", 1.0, 2), ("strong average gap", "strong_average_gap", 1.0, 2),
                    ("parameters changed %", "fraction_changed", 100.0, 2), ("wall time s", "wall_time_s", 1.0, 1)]
    table.add_section()
    for label, key, scale, digits in summary_rows:
        if all(r[key] is None for r in records):
            continue
        row = [label] + ([""] if oracle_metrics is not None else [])
        row += [cell(None if r[key] is None else r[key] * scale, digits=digits) for r in records]
        table.add_row(*row)
    return table


@handle_errors
def evaluate(
    models: Annotated[list[str], typer.Argument(help="Checkpoints to evaluate (.safetensors).")],
    forget: Annotated[Optional[str], typer.Option("--forget", help="Forget-set file the models were unlearned on.")] = None,
    oracle: Annotated[Optional[str], typer.Option("--oracle", help="Oracle: retrained without exactly this forget set.")] = None,
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write results (unlearn-results/1) to FILE or '-'.")] = None,
    parent: Annotated[Optional[str], typer.Option("--parent", help="Checkpoint the models were unlearned from.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Inference batch size (default: 512)")] = None,
    allow_mismatch: Annotated[Optional[bool], typer.Option("--allow-mismatch", help="Accept an oracle trained without another forget set (recorded in the results).")] = None,
    oracle_results: Annotated[Optional[str], typer.Option("--oracle-results", help="Take the oracle's metrics from an earlier results file of the same oracle, forget set and --seed instead of measuring them again.")] = None,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Forget / retain / test accuracy and five MIA scores per model; with --oracle the gaps to it."""
    cfg = resolve_config(EvaluateConfig, config, {
        "forget": forget, "oracle": oracle, "parent": parent, "batch_size": batch_size, "seed": seed,
        "device": device, "data_root": data_root, "allow_mismatch": allow_mismatch,
        "oracle_results": oracle_results})
    if cfg.forget is None:
        raise UserError("--forget is required: the forget-set file the models were unlearned on")
    if cfg.oracle_results is not None and cfg.oracle is None:
        raise UserError("--oracle-results gives the metrics of the --oracle checkpoint; pass --oracle too")
    if json_output not in (None, "-"):
        check_writable(json_output)
    target = select_device(cfg.device)
    checkpoints = [load_checkpoint(path) for path in models]
    reference = checkpoints[0]
    data = dataset_for(reference, cfg.data_root)
    for checkpoint in checkpoints:
        _check_fits_data(checkpoint, reference, data, "the model")
    forget_set = read_forget_set(cfg.forget, num_train=data.num_train, dataset=reference.meta["dataset"],
                                 allow_other_dataset=cfg.allow_mismatch)
    oracle_checkpoint = matches = None
    if cfg.oracle is not None:
        oracle_checkpoint = load_checkpoint(cfg.oracle)
        _check_fits_data(oracle_checkpoint, reference, data, "the oracle")
        matches = _check_oracle(oracle_checkpoint, forget_set, cfg.allow_mismatch)
    parent_checkpoint = load_checkpoint(cfg.parent) if cfg.parent is not None else None
    derived = [parent_checkpoint is not None and _check_parent(c, parent_checkpoint) for c in checkpoints]

    retain = retain_indices(data.num_train, forget_set.indices)
    member_positions, nonmembers = shadow_split(data.train_labels[retain], data.test_labels, cfg.seed)
    members = retain[member_positions]
    mia_setting = {"members": len(members), "nonmembers": len(nonmembers), "forget": len(forget_set.indices),
                   "seed": cfg.seed, "svc": dict(SVC_SETTINGS)}
    reused = None
    if cfg.oracle_results is not None:
        reused = _reused_oracle_metrics(cfg.oracle_results, oracle_checkpoint, forget_set, mia_setting)

    def measure(checkpoint: Checkpoint) -> dict:
        model = checkpoint.model.to(target)
        train_logits, train_labels = predict(model, data.batches("train", batch_size=cfg.batch_size, device=target))
        test_logits, test_labels = predict(model, data.batches("test", batch_size=cfg.batch_size, device=target))
        checkpoint.model.cpu()
        return evaluate_outputs(train_logits, train_labels, test_logits, test_labels, forget_set.indices,
                                members, nonmembers, seed=cfg.seed)

    with _progress(len(checkpoints) + (oracle_checkpoint is not None and reused is None), quiet) as advance:
        oracle_block = None
        if oracle_checkpoint is not None:
            oracle_block = {"source": oracle_checkpoint.source, "sha256": oracle_checkpoint.sha256,
                            "seed": _identity(oracle_checkpoint, forget_set)["seed"],
                            "excluded_sha256": oracle_checkpoint.meta.get("excluded_sha256"),
                            "matches_forget_set": matches,
                            "metrics": measure(oracle_checkpoint) if reused is None else reused,
                            "metrics_from": cfg.oracle_results}
            if reused is None:
                advance(Path(oracle_checkpoint.source).name)
        records = []
        for checkpoint, is_derived in zip(checkpoints, derived):
            metrics = measure(checkpoint)
            records.append(result_record(
                model=_model_fields(checkpoint), **_identity(checkpoint, forget_set),
                forget={"source": forget_set.source, "sha256": forget_set.sha256, "size": len(forget_set.indices),
                        "kind": (forget_set.info or {}).get("kind", "indices")},
                metrics=metrics, oracle=oracle_block,
                comparison=oracle_gaps(metrics, oracle_block["metrics"]) if oracle_block else None,
                allow_mismatch=bool(cfg.allow_mismatch and oracle_block is not None and not matches),
                parent={"source": parent_checkpoint.source, "sha256": parent_checkpoint.sha256} if parent_checkpoint else None,
                fraction_changed=fraction_changed(checkpoint.model.named_parameters(),
                                                  parent_checkpoint.model.named_parameters()) if is_derived else None,
                wall_time_s=_number(checkpoint.meta.get("wall_time_s")), mask_sha256=checkpoint.meta.get("mask_sha256"),
                mia={key: value for key, value in mia_setting.items() if key != "svc"}))
            advance(Path(checkpoint.source).name)
    if not quiet:
        stderr.print(_render(records, oracle_block["metrics"] if oracle_block else None))
        if oracle_block is not None and not matches:
            stderr.print("[yellow]warning: the oracle was not trained without this forget set (--allow-mismatch)[/yellow]")
    if json_output is not None:
        print_json(results_document(records), json_output)
