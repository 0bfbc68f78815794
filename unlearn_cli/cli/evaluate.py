"""`unlearn evaluate`: accuracies, MIA scores and gaps to the oracle for one or more checkpoints.

Usage:
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors --json results.json
    unlearn evaluate original.safetensors a.safetensors b.safetensors --forget forget.json --parent original.safetensors
    unlearn evaluate unlearned.safetensors --forget forget.json --oracle oracle.safetensors \
        --oracle-results original.json --json results.json    # the oracle's metrics from an earlier run
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearn_cli.cli.common import (ConfigOption, DataRootOption, DeviceOption, ProgressLines, QuietOption, SeedOption,
                                    handle_errors, is_terminal, print_json, stderr)
from unlearn_cli.config import resolve_config
from unlearn_cli.cost import reference_units
from unlearn_cli.engine import select_device
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.metrics import (corrective_view, fraction_changed, metric_keys, metric_label, model_metrics,
                                          oracle_gaps, shadow_sets)
from unlearn_cli.evaluate.mia import SVC_SETTINGS
from unlearn_cli.evaluate.provenance import reused_oracle_metrics, run_identity
from unlearn_cli.evaluate.results import read_results, result_record, results_document
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.streams import check_writable
from unlearn_cli.lineage import check_fits_data, check_oracle, check_parent, data_as_trained, dataset_for
from unlearn_cli.tune import halve_test_set


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
    test_part: str = "all"  # all | reported: only the test examples `unlearn tune --seed tune_seed` never looked at
    tune_seed: int = 0  # the --seed of the `unlearn tune` whose reference and validation parts are left out


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


@contextlib.contextmanager
def _progress(total: int, quiet: bool):
    """Yields `advance(name)`: one step per evaluated checkpoint on a rich progress bar; in a log or a pipe, a line
    when the work starts and one as each checkpoint is done."""
    if quiet:
        yield lambda name: None
        return
    if not is_terminal(stderr.file):
        lines = ProgressLines("evaluate", total)
        lines.start(f"{total} checkpoint{'s' if total != 1 else ''} to measure; each: predicting the train and test "
                    f"sets, fitting the MIA attacks")
        done = iter(range(1, total + 1))
        yield lambda name: lines.update(next(done, total), status=f"{name} done", force=True)
        lines.finish()
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

    for key in metric_keys(corrective=True):
        if all(key not in r["metrics"] for r in records):
            continue
        row = [metric_label(key)] + ([cell(oracle_metrics.get(key))] if oracle_metrics is not None else [])
        row += [cell(r["metrics"].get(key), (r["gaps"] or {}).get(key)) for r in records]
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
    if any(r["cost"] is not None for r in records):  # machine-independent, beside the wall time (docs/cost.md)
        table.add_row("cost ×retrain", *([""] if oracle_metrics is not None else []),
                      *[cell((r["cost"] or {}).get("x_retrain"), digits=3) for r in records])
    return table


@handle_errors
def evaluate(
    models: Annotated[list[str], typer.Argument(help="Checkpoints to evaluate (.safetensors).")],
    forget: Annotated[Optional[str], typer.Option("--forget", help="Forget-set file the models were unlearned on.")] = None,
    oracle: Annotated[Optional[str], typer.Option("--oracle", help="Oracle: retrained without exactly this forget set.")] = None,
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write results (unlearn-results/1) to FILE or '-'.")] = None,
    parent: Annotated[Optional[str], typer.Option("--parent", help="Checkpoint the models were unlearned from.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Inference batch size (default: 512)")] = None,
    allow_mismatch: Annotated[Optional[bool], typer.Option("--allow-mismatch", help="Accept an oracle trained without another forget set, or a forget set made for another dataset (recorded in the results).")] = None,
    test_part: Annotated[Optional[str], typer.Option("--test-part", help="all (default), or reported: only the test examples that `unlearn tune --seed TUNE_SEED` left out of its reference and validation parts.")] = None,
    tune_seed: Annotated[Optional[int], typer.Option("--tune-seed", help="The --seed of that `unlearn tune` (default: 0).")] = None,
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
        "oracle_results": oracle_results, "test_part": test_part, "tune_seed": tune_seed}, section="evaluate")
    if cfg.forget is None:
        raise UserError("--forget is required: the forget-set file the models were unlearned on")
    if cfg.oracle_results is not None and cfg.oracle is None:
        raise UserError("--oracle-results gives the metrics of the --oracle checkpoint; pass --oracle too")
    if json_output not in (None, "-"):
        check_writable(json_output, "--json", {"MODEL": models, "--forget": cfg.forget, "--oracle": cfg.oracle,
                                                "--parent": cfg.parent, "--oracle-results": cfg.oracle_results,
                                                "--config": config})
    target = select_device(cfg.device)
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

    test_part = None
    if cfg.test_part == "reported":  # leave out the test examples tuning scored candidates on
        _, part = halve_test_set(data.test_labels, cfg.tune_seed)
        data = data.test_subset(part)
        test_part = {"part": "reported", "tune_seed": cfg.tune_seed, "size": len(part)}
    elif cfg.test_part != "all":
        raise UserError(f"--test-part {cfg.test_part!r}: choose all or reported")
    corrective = corrective_view(clean, data, forget_set, cfg.seed)

    members, nonmembers = shadow_sets(data, forget_set.indices, cfg.seed)
    mia_setting = {"members": len(members), "nonmembers": len(nonmembers), "forget": len(forget_set.indices),
                   "seed": cfg.seed, "svc": dict(SVC_SETTINGS), **({"test_part": test_part} if test_part else {})}
    reused = None
    if cfg.oracle_results is not None:
        reused = reused_oracle_metrics(read_results(cfg.oracle_results), cfg.oracle_results, oracle_checkpoint,
                                       forget_set, mia_setting)

    def measure(checkpoint: Checkpoint) -> dict:
        metrics = model_metrics(checkpoint.model.to(target), data, forget_set.indices, members, nonmembers,
                                cfg.seed, cfg.batch_size, target, corrective)
        checkpoint.model.cpu()
        return metrics

    with _progress(len(checkpoints) + (oracle_checkpoint is not None and reused is None), quiet) as advance:
        oracle_block = None
        if oracle_checkpoint is not None:
            oracle_block = {"source": oracle_checkpoint.source, "sha256": oracle_checkpoint.sha256,
                            "seed": oracle_checkpoint.provenance.seed,
                            "excluded_sha256": oracle_checkpoint.provenance.excluded_sha256,
                            "matches_forget_set": matches,
                            "metrics": measure(oracle_checkpoint) if reused is None else reused,
                            "metrics_from": cfg.oracle_results, "wall_time_s": oracle_checkpoint.wall_time_s}
            if reused is None:
                advance(Path(oracle_checkpoint.source).name)
        records = []
        for checkpoint, is_derived in zip(checkpoints, derived):
            metrics = measure(checkpoint)
            records.append(result_record(
                model=_model_fields(checkpoint), **run_identity(checkpoint, forget_set),
                forget={"source": forget_set.source, "sha256": forget_set.sha256, "size": len(forget_set.indices),
                        "kind": (forget_set.info or {}).get("kind", "indices"), **forget_set.manipulation_fields()},
                metrics=metrics, oracle=oracle_block,
                comparison=oracle_gaps(metrics, oracle_block["metrics"]) if oracle_block else None,
                allow_mismatch=mismatch_allowed,
                parent={"source": parent_checkpoint.source, "sha256": parent_checkpoint.sha256} if parent_checkpoint else None,
                fraction_changed=fraction_changed(checkpoint.model.named_parameters(),
                                                  parent_checkpoint.model.named_parameters()) if is_derived else None,
                wall_time_s=checkpoint.wall_time_s, mask_sha256=checkpoint.provenance.mask_sha256,
                mia={key: value for key, value in mia_setting.items() if key != "svc"},
                cost=_cost_fields(checkpoint, data.num_train - len(forget_set.indices), forget_set.sha256)))
            advance(Path(checkpoint.source).name)
    if not quiet:
        stderr.print(_render(records, oracle_block["metrics"] if oracle_block else None))
        if mismatch_allowed:
            stderr.print("[yellow]warning: --allow-mismatch let a mismatch through (an oracle trained without another "
                         "forget set, or a forget set for another dataset); it is recorded in the results[/yellow]")
    if json_output is not None:
        print_json(results_document(records), json_output)
