"""`unlearn audit`: does each forget example look, over many unlearned models, as it does over many retrained ones?

Scores a pool of unlearned checkpoints against a pool of retrained ones (trained without exactly the forget
set) example by example, with the NeurIPS 2023 unlearning challenge's ε-based forget score, a leave-one-out
likelihood-ratio attack (plain, and on φ standardized per model) and KL divergences of the logit-scaled
confidence φ (docs/audit.md). Beside it: the originals against the retrained pool (what no unlearning
scores), an independent oracle pool against the retrained one (what perfect unlearning scores; without one,
the retrained pool's two halves), and the same numbers on seeded samples of retain and test examples. Forget-set
numbers carry bootstrap intervals over models and examples, and their excess over a test sample with the
forget set's class mix.

Usage:
    unlearn audit --forget forget.json --unlearned 'pool/del-*.safetensors' --retrained 'pool/oracle-*.safetensors' \
        --original 'pool/original-*.safetensors' --ceiling 'pool2/oracle-*.safetensors' \
        --json audit.json --per-example audit.csv --plot audit.png
    unlearn audit --forget forget.json --unlearned 'pool/del-*.safetensors' --retrained 'pool/oracle-*.safetensors' \
        --relearn --relearn-part 0.2     # and how fast each pool regains the forget set (docs/relearn.md)
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, ProgressLines, QuietOption, handle_errors, print_json, pyplot, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import resolve_config
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.audit import BOOTSTRAPPED, INTERVAL_LEVEL
from unlearn_cli.evaluate.keys import number_text, with_interval
from unlearn_cli.evaluate.results import AUDIT_FORMAT
from unlearn_cli.runs.options import AuditConfig, check_audit_config
from unlearn_cli.signals import reporting
from unlearn_cli.streams import check_writable, write_output, written

if TYPE_CHECKING:  # the torch-using modules are imported where they run: `audit --help` needs no torch
    import torch

    from unlearn_cli.runs.audit import ForgetTerciles, Pool

WORST_SHOWN = 5  # examples whose φ distributions the plot draws


def per_example_csv(row: dict, pools: dict[str, Pool], forget_set, labels: torch.Tensor, classes: torch.Tensor,
                    terciles: ForgetTerciles | None = None) -> bytes:
    """One line per forget example of the unlearned-vs-retrained comparison: `labels` [F] what the models were
    trained with (a mislabelled forget set's new labels, a poisoned one's target), `classes` [F] the true ones; with
    `terciles` (--memorization), each example's memorization score and tercile, and (with --original) the forget
    set's influence on it (`forget_set_influence`)."""
    from unlearn_cli.data.splits import LEVELS
    from unlearn_cli.runs.audit import forget_set_influence

    indices = forget_set.indices
    columns = ["index", "label", "class", "epsilon", "points", "attack_accuracy", "attack_auc", "kl_gaussian",
               "kl_binned"] + [f"median_phi_{name}" for name in pools]
    medians = {name: np.median(pool.values("forget"), axis=0) for name, pool in pools.items()}
    influence = forget_set_influence(pools) if terciles is not None else None
    if terciles is not None:
        columns += ["memorization", "tercile"] + (["influence"] if influence is not None else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    per_example = row["per_example"]
    for position, index in enumerate(indices.tolist()):
        values = [per_example[key][position] for key in ("epsilon", "points", "attack_accuracy", "attack_auc",
                                                         "kl_gaussian", "kl_binned")]
        values += [medians[name][position] for name in pools]
        cells = [index, int(labels[position]), int(classes[position])] + [f"{value:.6g}" for value in values]
        if terciles is not None:
            level = int(terciles.levels[position])
            cells += [f"{float(terciles.values[position]):.6g}", LEVELS[level] if level >= 0 else ""]
            cells += [] if influence is None else [f"{influence[position]:.6g}"]
        writer.writerow(cells)
    return buffer.getvalue().encode()


def plot_png(rows: list[dict], pools: dict[str, Pool], forget_indices: torch.Tensor) -> bytes:
    """The ε histogram of every forget-set comparison, then each pool's φ on the five examples of largest ε."""
    plt = pyplot()
    forget_rows = [row for row in rows if row["examples"] == "forget"]
    main = forget_rows[0]["per_example"]
    worst = np.lexsort((-main["attack_accuracy"], -main["epsilon"]))[:WORST_SHOWN]
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    axes = axes.ravel()
    bins = np.linspace(0, max(5.0, max(row["resolution"] for row in forget_rows) + 1), 31)
    for row in forget_rows:
        eps = np.minimum(row["per_example"]["epsilon"], bins[-1])
        axes[0].hist(eps, bins=bins, histtype="step", linewidth=1.5,
                     label=f"{row['name']}: score {row['forget_score']:.3f}")
    axes[0].set_xlabel(f"ε per forget example (ε ≥ {bins[-1]:g} drawn at {bins[-1]:g})")
    axes[0].set_ylabel("forget examples")
    axes[0].legend(fontsize=7)
    for axis, example in zip(axes[1:], worst):
        for name, pool in pools.items():
            axis.hist(pool.values("forget")[:, example], bins=15, alpha=0.5, label=name)
        axis.set_title(f"training example {int(forget_indices[example])}: ε {main['epsilon'][example]:.2f}, "
                       f"attack {main['attack_accuracy'][example]:.2f}", fontsize=9)
        axis.set_xlabel("φ = log p_y − log(1 − p_y)")
    axes[1].legend(fontsize=7)
    for axis in axes[1 + len(worst):]:
        axis.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def render(rows: list[dict], retrained: dict[str, float], resamples: int) -> list[Table]:
    """The comparisons' table and, when a matched sample was scored, the F-specific excess of the forget rows."""
    accuracy = "/".join(f"{retrained[key]:.1f}" for key in ("forget", "retain", "test"))
    intervals = (f"[…]: {INTERVAL_LEVEL:.0%} bootstrap intervals over models and examples ({resamples} resamples)"
                 if resamples else "no intervals (--bootstrap 0)")
    table = Table(title="unlearn audit (forget score: 1 = indistinguishable from retraining; attack 0.5 = chance)",
                  caption=f"the retrained pool's accuracy, forget/retain/test: {accuracy}; {intervals}; "
                          f"normalized: the forget score from the originals' (0) to the ceiling's (1); "
                          f"normalized attack: on φ standardized per model over the test set")
    for header in ("comparison", "models", "forget score", "normalized", "final score", "attack acc", "attack AUC",
                   "normalized attack acc", "KL mean", "KL p95", "acc forget/retain/test", "ε ≤"):
        table.add_column(header, justify="left" if header == "comparison" else "right")
    for row in rows:
        accuracy = row["accuracy"]["first"]
        interval = row["intervals"] or {}
        name = row["name"] + (" (half the models a side)" if row["pool"] == "half" else "")
        table.add_row(name, "{} + {}".format(*row["models"]),
                      with_interval(row["forget_score"], interval.get("forget_score")),
                      "" if row["normalized_score"] is None else with_interval(**row["normalized_score"]),
                      number_text(row["final_score"]),
                      with_interval(row["attack_accuracy"], interval.get("attack_accuracy")),
                      with_interval(row["attack_auc"], interval.get("attack_auc")),
                      number_text(row["attack_normalized"]["accuracy"]),
                      with_interval(row["kl_gaussian"]["mean"], interval.get("kl_gaussian_mean")),
                      number_text(row["kl_gaussian"]["p95"]),
                      "/".join(f"{accuracy[key]:.1f}" for key in ("forget", "retain", "test")),
                      str(row["resolution"]))
    tables = [table]
    excess_rows = [row for row in rows if row["excess"] is not None]
    if excess_rows:
        size = excess_rows[0]["excess"]["examples"]
        excess = Table(title="F-specific excess: the number on the forget set minus the same on a matched unseen sample",
                       caption=f"matched sample: {size} test examples with the forget set's class mix; an excess "
                               f"near 0 means the pool differs from the retrained one on F no more than on unseen "
                               f"examples (e.g. a changed temperature), not that it remembers F")
        for header in ("comparison", "forget score", "attack acc", "attack AUC", "KL mean"):
            excess.add_column(header, justify="left" if header == "comparison" else "right")
        for row in excess_rows:
            excess.add_row(row["name"], *[with_interval(row["excess"][key]["excess"], row["excess"][key]["interval"])
                                          for key in BOOTSTRAPPED])
        tables.append(excess)
    relearn_rows = [row for row in rows if row.get("relearn")]
    if relearn_rows:
        tables.append(render_relearn(relearn_rows))
    return tables


def render_relearn(rows: list[dict]) -> Table:
    """Per forget-set comparison and learning rate: each side's mean accuracy on F ∖ A before and after relearning,
    and the relearn gap with its 95% t-interval over the pairs of models."""
    table = Table(title="relearning: accuracy on the forget set's rest F∖A while finetuning on its part A",
                  caption="relearn gap: mean over the steps of the pool's accuracy on F∖A − the retrained pool's "
                          "(points; 0: relearns like a model that never saw F, > 0: regains F faster), model i paired "
                          "with retrained model i; [95% Student-t interval over the pairs]")
    for header in ("comparison", "lr", "pool F∖A acc, step 0 → last", "retrained F∖A acc", "relearn gap", "pairs"):
        table.add_column(header, justify="left" if header == "comparison" else "right")
    for row in rows:
        for entry in row["relearn"]:
            first, second = entry["curves"]["first"], entry["curves"]["second"]
            table.add_row(row["name"], f"{entry['lr']:g}", f"{first[0]:.1f} → {first[-1]:.1f}",
                          f"{second[0]:.1f} → {second[-1]:.1f}", with_interval(entry["gap"], entry["interval"], 2),
                          str(entry["pairs"]))
    return table


@contextlib.contextmanager
def _progress(total: int, quiet: bool):
    """Yields `on_step(status)`, one step per model measured: a line when the measuring starts, then lines at the
    pace of `ProgressLines`."""
    if quiet:
        yield lambda status: None
        return
    lines = ProgressLines("audit", total)
    lines.start(f"{total} models to measure: logits on the training and test sets")
    done = iter(range(1, total + 1))
    yield lambda status: lines.update(next(done, total), status=status)
    lines.finish()


def _check_outputs(outputs: list[tuple[str, str]], inputs: dict) -> None:
    """Each output (flag, path) writable, none over an input or another output; only --json on stdout; matplotlib
    present for --plot (reported before the work)."""
    for index, (flag, path) in enumerate(outputs):
        if path == "-" and flag != "--json":
            raise UserError(f"{flag} -: only --json may go to stdout; give {flag} a file path")
        check_writable(path, flag, inputs, binary=flag == "--plot")
        for other_flag, other in outputs[:index]:
            if path != "-" and os.path.realpath(path) == os.path.realpath(other):
                raise UserError(f"{flag} {path} is also {other_flag}; give each output its own path")
    if any(flag == "--plot" for flag, _ in outputs):
        pyplot()  # a missing matplotlib is reported before the work


@handle_errors
@with_options(AuditConfig)
def audit(
    given: dict,
    json_output: Annotated[Optional[str], typer.Option("--json", help=f"Write the audit ({AUDIT_FORMAT}) to FILE or '-'.")] = None,
    per_example: Annotated[Optional[str], typer.Option("--per-example", help="Write a CSV of every forget example (ε, points, attack, KL, median φ).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG: ε histograms and the five worst examples' φ.")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Per-example forgetting audit of a pool of unlearned models against a pool of retrained ones."""
    from unlearn_cli.engine import use_threads  # here: --help needs no torch
    from unlearn_cli.runs.audit import audit_document, audit_rows, load_pools, measure_pools, prepare_audit

    cfg = resolve_config(AuditConfig, config, given, section="audit")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    check_audit_config(cfg)
    pools, paths = load_pools(cfg)
    _check_outputs([(flag, path) for flag, path in (("--json", json_output), ("--per-example", per_example),
                                                    ("--plot", plot)) if path is not None],
                   {"--forget": cfg.forget, "--config": config, "--memorization": cfg.memorization, **paths})
    plan = prepare_audit(cfg, pools)
    with _progress(plan.models, quiet) as on_step:
        measure_pools(plan, on_step)
    rows = audit_rows(plan.pools, cfg.bootstrap, cfg.seed)
    if not quiet:
        for table in render(rows, plan.pools["retrained"].mean_accuracy(), cfg.bootstrap):
            stderr.print(table)
        for warning in plan.warnings:
            stderr.print(f"[yellow]warning: {warning}[/yellow]")
    forget_set = plan.forget_set
    complete = lambda: [path for path in (per_example, plot) if path is not None and written(path)]  # noqa: E731
    with reporting(lambda: f"{', '.join(complete())} {'is' if len(complete()) == 1 else 'are'} written and complete, "
                           f"the other outputs are not" if complete() else None):
        if per_example is not None:
            write_output(per_example, per_example_csv(rows[0], plan.pools, forget_set,
                                                      plan.data.train_labels[forget_set.indices], plan.classes,
                                                      plan.terciles), binary=False)
        if plot is not None:
            write_output(plot, plot_png(rows, plan.pools, forget_set.indices))
        if json_output is not None:
            print_json(audit_document(rows, plan), json_output)
