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
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass, field
from typing import Annotated, Optional

import numpy as np
import torch
import typer
from rich.table import Table

import unlearn_cli
from unlearn_cli.cli.common import (ConfigOption, DataRootOption, DeviceOption, ProgressLines, QuietOption,
                                    SeedOption, handle_errors, print_json, pyplot, stderr)
from unlearn_cli.config import resolve_config
from unlearn_cli.data.splits import retain_indices
from unlearn_cli.engine import predict, select_device
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.audit import (BOOTSTRAPPED, INTERVAL_LEVEL, RANGES, bootstrap, compare_pools, excess,
                                        halves, headline, normalized_score, number_text, percentile_interval,
                                        summarize, with_interval)
from unlearn_cli.evaluate.epsilon import (BUCKET_WIDTH, DELTA, EPSILON_CAP, INTERVAL_SLACK, PEAKY_RATIO,
                                          epsilon_resolution, final_score, logit_scaled_confidence)
from unlearn_cli.evaluate.metrics import accuracy_percent
from unlearn_cli.evaluate.pool_attacks import KL_MAX_BINS, KL_PSEUDOCOUNT, kl_bins, likelihood_ratio_attack, standardize
from unlearn_cli.evaluate.provenance import run_identity
from unlearn_cli.evaluate.results import AUDIT_FORMAT, finite_or_none
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.limits import check_size
from unlearn_cli.streams import check_writable, write_output
from unlearn_cli.lineage import check_audit_pools, data_as_trained, dataset_for
from unlearn_cli.tune.reference import tuning_parts

FEW_MODELS = 16  # below this many models per pool the ε buckets are coarse enough to warn
WORST_SHOWN = 5  # examples whose φ distributions the plot draws
MAX_BOOTSTRAP = 10_000  # bootstrap resamples at most


@dataclass
class AuditConfig:
    forget: Optional[str] = None  # forget-set file the unlearned models were unlearned on (required)
    unlearned: list[str] = field(default_factory=list)  # checkpoint paths or glob patterns
    retrained: list[str] = field(default_factory=list)  # trained without exactly the forget set
    original: list[str] = field(default_factory=list)  # optional: the models the unlearned ones started from
    ceiling: list[str] = field(default_factory=list)  # optional: oracles independent of --retrained, as many as --unlearned
    data_root: Optional[str] = None
    batch_size: int = 512  # inference batch size
    seed: int = 0  # draws the retain, test and matched samples and the bootstrap's resamples
    control_size: Optional[int] = None  # examples per control sample; default: as many as the forget set
    bootstrap: int = 200  # resamples of models and examples for the 95% intervals; 0: none
    device: str = "auto"


@dataclass
class Pool:
    """One pool's models (metadata only) and, once measured, φ and accuracies of each model."""

    name: str
    checkpoints: list[Checkpoint]
    phi: dict[str, list[np.ndarray]] = field(default_factory=dict)  # part -> one [E] array per model
    # ("reference": every test example, what standardizes each model's φ for the normalized attack)
    accuracy: dict[str, list[float]] = field(default_factory=dict)  # forget / retain / test -> % per model

    def values(self, part: str) -> np.ndarray:  # [N, E]
        return np.stack(self.phi[part])

    def standardized(self, part: str) -> np.ndarray:  # [N, E]: each model's φ on its own scale
        return standardize(self.values(part), self.values("reference"))

    def mean_accuracy(self, positions: list[int] | None = None) -> dict[str, float]:
        """Mean accuracy (%) per part over the pool, or over the models at `positions`."""
        return {key: float(np.mean(values if positions is None else [values[i] for i in positions]))
                for key, values in self.accuracy.items()}


def expand_pool(patterns: list[str], flag: str) -> list[str]:
    """Checkpoint paths of a pool: each pattern a path or a glob, sorted, every pattern matching something."""
    paths: list[str] = []
    for pattern in patterns:
        if pattern == "-":
            raise UserError(f"{flag} -: a pool is read from files, not stdin; give paths or a glob such as "
                            f"'pool/model-*.safetensors'")
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"{flag} {pattern!r} matches no file; check the pattern (quote it, so the shell leaves "
                            f"it to unlearn)")
        paths += matches
    check_size(len(paths), "pool_models", flag, "number of models")
    return paths


def _load_pools(cfg: AuditConfig) -> tuple[list[Pool], dict[str, list[str]]]:
    pools, paths = [], {}
    named = [("unlearned", cfg.unlearned, "--unlearned"), ("retrained", cfg.retrained, "--retrained"),
             ("original", cfg.original, "--original"), ("ceiling", cfg.ceiling, "--ceiling")]
    owner: dict[str, tuple[str, str]] = {}  # resolved path -> (flag, path as named)
    for name, patterns, flag in named:
        if not patterns:
            if name in ("unlearned", "retrained"):
                raise UserError(f"{flag} is required: the {name} models' checkpoints, e.g. {flag} "
                                f"'pool/{name}-*.safetensors'")
            continue
        paths[flag] = expand_pool(patterns, flag)
        if len(paths[flag]) < 2:
            raise UserError(f"{flag}: {len(paths[flag])} model; a pool needs at least 2 (16 or more for a fine "
                            f"ε scale): train more with --seeds")
        for path in paths[flag]:
            real = os.path.realpath(path)
            if real in owner:
                other_flag, named = owner[real]
                if other_flag == flag:
                    raise UserError(f"{flag}: {path} is named twice (also as {named}); name each model once")
                raise UserError(f"{path} is in both {other_flag} and {flag}; a model belongs to one pool")
            owner[real] = (flag, path)
        checkpoints = []
        for path in paths[flag]:
            checkpoint = load_checkpoint(path)
            checkpoint.model = None  # checked now, measured later: one model's weights in memory at a time
            checkpoints.append(checkpoint)
        # by seed, then file hash: the bootstrap draws models by position, so any order of the same files gives
        # the same intervals
        checkpoints.sort(key=lambda c: (c.provenance.seed if c.provenance.seed is not None else -1, c.sha256))
        pools.append(Pool(name, checkpoints))
    return pools, paths


def _control_samples(data, forget_indices: torch.Tensor, forget_classes: torch.Tensor, size: int,
                     seed: int) -> dict[str, torch.Tensor]:
    """The examples each part scores: the forget set, seeded samples of `size` retain and test examples, the
    matched sample (test examples with the forget set's class mix: tune's oracle-free reference, per class as
    many as the forget set has, at most a quarter of the class) and every test example (the reference that
    standardizes each model's φ)."""
    retain = retain_indices(data.num_train, forget_indices)
    generator = torch.Generator().manual_seed(seed)
    retain_sample = retain[torch.randperm(len(retain), generator=generator)[:size]].sort().values
    test_sample = torch.randperm(len(data.test_labels), generator=generator)[:size].sort().values
    matched = tuning_parts(data.test_labels, forget_classes, seed).reference
    return {"forget": forget_indices, "retain": retain_sample, "test": test_sample, "matched": matched,
            "reference": torch.arange(len(data.test_labels))}


def measure(pools: list[Pool], data, parts: dict[str, torch.Tensor], forget_indices: torch.Tensor,
            batch_size: int, target: torch.device, quiet: bool, matched_view=None) -> None:
    """φ of every model on every part, and its forget / retain / test accuracy; one model in memory at a time.

    `matched_view`: for a manipulated forget set, the matched sample manipulated by the same rule (its test
    set: `Manipulation.view_unseen`), scored in place of the plain matched examples."""
    retain = retain_indices(data.num_train, forget_indices)
    total = sum(len(pool.checkpoints) for pool in pools)
    lines = None if quiet else ProgressLines("audit", total)
    if lines:
        lines.start(f"{total} models to measure: logits on the training and test sets")
    done = 0
    for pool in pools:
        for checkpoint in pool.checkpoints:
            loaded = load_checkpoint(checkpoint.source)
            if loaded.sha256 != checkpoint.sha256:
                raise UserError(f"{checkpoint.source}: the file changed while the audit ran; run it again")
            model = loaded.model.to(target)
            train_logits, train_labels = predict(model, data.batches("train", batch_size=batch_size, device=target))
            test_logits, test_labels = predict(model, data.batches("test", batch_size=batch_size, device=target))
            if matched_view is not None:
                pool.phi.setdefault("matched", []).append(logit_scaled_confidence(*predict(
                    model, matched_view.batches("test", batch_size=batch_size, device=target))).numpy())
            del model, loaded
            for part, indices in parts.items():
                if part == "matched" and matched_view is not None:
                    continue
                logits, labels = ((train_logits, train_labels) if part in ("forget", "retain")
                                  else (test_logits, test_labels))
                pool.phi.setdefault(part, []).append(
                    logit_scaled_confidence(logits[indices], labels[indices]).numpy())
            for key, logits, labels in (("forget", train_logits[forget_indices], train_labels[forget_indices]),
                                        ("retain", train_logits[retain], train_labels[retain]),
                                        ("test", test_logits, test_labels)):
                pool.accuracy.setdefault(key, []).append(accuracy_percent(logits, labels))
            done += 1
            if lines:
                lines.update(done, status=f"{pool.name} {os.path.basename(checkpoint.source)}")
    if lines:
        lines.finish()


@dataclass
class Side:
    """One side of a comparison: φ per part ([N, E]), the same standardized per model, mean accuracies (%)."""

    phi: dict[str, np.ndarray]
    standardized: dict[str, np.ndarray]
    accuracy: dict[str, float]


def _side(pool: Pool, positions: list[int] | None = None) -> Side:
    """A pool, or the models of it at `positions`, as one side of a comparison."""
    chosen = slice(None) if positions is None else positions
    parts = ("forget", "retain", "test", "matched")
    return Side({part: pool.values(part)[chosen] for part in parts},
                {part: pool.standardized(part)[chosen] for part in parts}, pool.mean_accuracy(positions))


def _sides(pools: dict[str, Pool], first_name: str) -> tuple[Side, Side]:
    """(the pool compared, the retrained pool); the halves split the retrained pool (alternate models once sorted
    by seed, then file hash: a rerun of the same recipe, with other wall times and so other file hashes, splits
    alike)."""
    retrained = pools["retrained"]
    if first_name != "half":
        return _side(pools[first_name]), _side(retrained)
    first_half, second_half = halves([(c.provenance.seed if c.provenance.seed is not None else -1, c.sha256)
                                      for c in retrained.checkpoints])
    return _side(retrained, first_half), _side(retrained, second_half)


def audit_rows(pools: dict[str, Pool], resamples: int, seed: int) -> list[dict]:
    """Every comparison the audit reports, each with its per-example arrays (under "per_example").

    Every row carries bootstrap intervals of its numbers, from `resamples` draws of models and examples
    (seeded by `seed`: rows of pools of the same sizes draw the same model positions); the forget-set rows
    also carry the excess of each number over the matched sample. The ceiling is the independent oracle pool (--ceiling) against the retrained pool when given, else
    the retrained pool's halves against each other.
    """
    comparisons = [("unlearned vs retrained", "unlearned", "forget")]
    if "original" in pools:
        comparisons.append(("original vs retrained", "original", "forget"))
    if "ceiling" in pools:
        comparisons.append(("ceiling vs retrained", "ceiling", "forget"))
    elif len(pools["retrained"].checkpoints) >= 4:  # halves of fewer than 2 models cannot be compared
        comparisons.append(("retrained ½ vs ½", "half", "forget"))
    for part in ("retain", "test"):
        comparisons.append((f"unlearned vs retrained ({part} sample)", "unlearned", part))
        if "original" in pools:
            comparisons.append((f"original vs retrained ({part} sample)", "original", part))
    matched_size = pools["retrained"].values("matched").shape[1]
    rows, scores = [], {}  # scores: pool -> (forget score, its replicates or None)
    for name, first_name, part in comparisons:
        first, second = _sides(pools, first_name)
        num_models = min(len(first.phi[part]), len(second.phi[part]))
        per_example = compare_pools(first.phi[part], second.phi[part])
        row = {"name": name, "pool": first_name, "examples": part,
               "models": [len(first.phi[part]), len(second.phi[part])], **summarize(per_example, num_models),
               "accuracy": {"first": first.accuracy, "second": second.accuracy}}
        row["final_score"] = final_score(
            row["forget_score"], (first.accuracy["retain"], second.accuracy["retain"]),
            (first.accuracy["test"], second.accuracy["test"])) if part == "forget" else None
        normalized = likelihood_ratio_attack(first.standardized[part], second.standardized[part])
        row["attack_normalized"] = {"accuracy": float(normalized["accuracy"].mean()),
                                    "auc": float(normalized["auc"].mean())}
        numbers = headline(row)
        with_excess = part == "forget" and matched_size >= 1
        measured = [part] + (["matched"] if with_excess else [])
        draws = bootstrap({key: first.phi[key] for key in measured}, {key: second.phi[key] for key in measured},
                          resamples, seed) if resamples > 0 else None
        row["intervals"] = None if draws is None else {
            key: percentile_interval(draws[part][key], numbers[key], bounds=RANGES[key]) for key in BOOTSTRAPPED}
        row["excess"] = None
        if with_excess:
            matched = headline(summarize(compare_pools(first.phi["matched"], second.phi["matched"]), num_models))
            row["excess"] = {"examples": matched_size, **excess(numbers, matched, draws)}
        row["per_example"] = per_example
        row["normalized_score"] = None
        if part == "forget":
            scores[first_name] = (row["forget_score"], None if draws is None else draws[part]["forget_score"])
        rows.append(row)
    ceiling = scores.get("ceiling", scores.get("half"))
    if "original" in scores and ceiling is not None:  # the unlearned pool on the scale from the originals to the ceiling
        rows[0]["normalized_score"] = normalized_score(scores["unlearned"], scores["original"], ceiling)
    return rows


def _pool_block(pool: Pool, forget_set) -> dict:
    models = []
    for checkpoint in pool.checkpoints:
        identity = run_identity(checkpoint, forget_set)
        models.append({"source": checkpoint.source, "sha256": checkpoint.sha256, **identity})
    shared = {key: models[0][key] if all(m[key] == models[0][key] for m in models) else None
              for key in ("method", "strategy", "budget")}
    return {"size": len(models), **shared, "accuracy": pool.mean_accuracy(), "models": models}


def audit_document(rows: list[dict], pools: dict[str, Pool], forget_set, reference: Checkpoint, cfg: AuditConfig,
                   control_size: int, warnings: list[str]) -> dict:
    def clean(value):  # JSON has no NaN or infinity: null
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return finite_or_none(value)

    return clean({
        "format": AUDIT_FORMAT, "unlearn_version": unlearn_cli.__version__,
        "forget": {"source": forget_set.source, "sha256": forget_set.sha256, "size": len(forget_set.indices),
                   "kind": (forget_set.info or {}).get("kind", "indices"), **forget_set.manipulation_fields()},
        "dataset": reference.describe_data(), "arch": reference.arch,
        "settings": {"delta": DELTA, "epsilon_cap": EPSILON_CAP, "bucket_width": BUCKET_WIDTH,
                     "peaky_ratio": PEAKY_RATIO, "interval_slack": INTERVAL_SLACK,
                     "kl_bins": kl_bins(min(len(pool.checkpoints) for pool in pools.values())),
                     "kl_max_bins": KL_MAX_BINS, "kl_pseudocount": KL_PSEUDOCOUNT, "control_size": control_size, "seed": cfg.seed,
                     "bootstrap": cfg.bootstrap, "interval_level": INTERVAL_LEVEL,
                     "matched_size": pools["retrained"].values("matched").shape[1],
                     "ceiling": "independent pool" if "ceiling" in pools else "retrained halves"},
        "pools": {name: _pool_block(pool, forget_set) for name, pool in pools.items()},
        "rows": [{key: value for key, value in row.items() if key != "per_example"} for row in rows],
        "warnings": warnings,
    })


def per_example_csv(row: dict, pools: dict[str, Pool], forget_set, labels: torch.Tensor, classes: torch.Tensor) -> bytes:
    """One line per forget example of the unlearned-vs-retrained comparison: `labels` [F] what the models were
    trained with (a mislabelled forget set's new labels, a poisoned one's target), `classes` [F] the true ones."""
    indices = forget_set.indices
    columns = ["index", "label", "class", "epsilon", "points", "attack_accuracy", "attack_auc", "kl_gaussian",
               "kl_binned"] + [f"median_phi_{name}" for name in pools]
    medians = {name: np.median(pool.values("forget"), axis=0) for name, pool in pools.items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    per_example = row["per_example"]
    for position, index in enumerate(indices.tolist()):
        values = [per_example[key][position] for key in ("epsilon", "points", "attack_accuracy", "attack_auc",
                                                         "kl_gaussian", "kl_binned")]
        values += [medians[name][position] for name in pools]
        writer.writerow([index, int(labels[position]), int(classes[position])] + [f"{value:.6g}" for value in values])
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
    return tables


@handle_errors
def audit(
    forget: Annotated[Optional[str], typer.Option("--forget", help="Forget-set file the unlearned models were unlearned on.")] = None,
    unlearned: Annotated[Optional[list[str]], typer.Option("--unlearned", help="Unlearned checkpoints: paths or quoted globs (repeatable).")] = None,
    retrained: Annotated[Optional[list[str]], typer.Option("--retrained", help="Checkpoints trained without exactly the forget set (repeatable).")] = None,
    original: Annotated[Optional[list[str]], typer.Option("--original", help="The original checkpoints the unlearned ones started from (repeatable; adds the no-unlearning rows).")] = None,
    ceiling: Annotated[Optional[list[str]], typer.Option("--ceiling", help="Oracles independent of --retrained (other seeds), as many as --unlearned: the perfect-unlearning row at full size (default: the retrained pool's halves).")] = None,
    json_output: Annotated[Optional[str], typer.Option("--json", help=f"Write the audit ({AUDIT_FORMAT}) to FILE or '-'.")] = None,
    per_example: Annotated[Optional[str], typer.Option("--per-example", help="Write a CSV of every forget example (ε, points, attack, KL, median φ).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG: ε histograms and the five worst examples' φ.")] = None,
    control_size: Annotated[Optional[int], typer.Option("--control-size", help="Retain and test examples in each control sample (default: the forget set's size).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Inference batch size (default: 512)")] = None,
    bootstrap_resamples: Annotated[Optional[int], typer.Option("--bootstrap", help=f"Resamples of models and examples for the 95% intervals, 0 to {MAX_BOOTSTRAP:,} (default: 200; 0: no intervals).")] = None,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Per-example forgetting audit of a pool of unlearned models against a pool of retrained ones."""
    cfg = resolve_config(AuditConfig, config, {
        "forget": forget, "unlearned": unlearned or None, "retrained": retrained or None,
        "original": original or None, "ceiling": ceiling or None, "batch_size": batch_size, "seed": seed,
        "device": device, "data_root": data_root, "control_size": control_size, "bootstrap": bootstrap_resamples},
        section="audit")
    if cfg.forget is None:
        raise UserError("--forget is required: the forget-set file the unlearned models were unlearned on")
    if cfg.control_size is not None and cfg.control_size < 1:
        raise UserError(f"--control-size {cfg.control_size}: must be at least 1")
    if not 0 <= cfg.bootstrap <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap {cfg.bootstrap}: give 0 (no intervals) to {MAX_BOOTSTRAP} resamples")
    pools_list, paths = _load_pools(cfg)
    outputs = [(flag, path) for flag, path in (("--json", json_output), ("--per-example", per_example),
                                               ("--plot", plot)) if path is not None]
    inputs = {"--forget": cfg.forget, "--config": config, **paths}
    for index, (flag, path) in enumerate(outputs):
        if path == "-" and flag != "--json":
            raise UserError(f"{flag} -: only --json may go to stdout; give {flag} a file path")
        check_writable(path, flag, inputs, binary=flag == "--plot")
        for other_flag, other in outputs[:index]:
            if path != "-" and os.path.realpath(path) == os.path.realpath(other):
                raise UserError(f"{flag} {path} is also {other_flag}; give each output its own path")
    if plot is not None:
        pyplot()  # a missing matplotlib is reported before the work
    pools = {pool.name: pool for pool in pools_list}
    reference = pools["retrained"].checkpoints[0]
    data = dataset_for(reference, cfg.data_root)
    forget_set = read_forget_set(cfg.forget, num_train=data.num_train, dataset=reference.dataset, override_flag=None)
    check_audit_pools({name: pool.checkpoints for name, pool in pools.items()}, forget_set, reference, data)
    classes = data.train_labels[forget_set.indices]  # true classes; the models may have trained on others
    data, forget_set = data_as_trained(data, forget_set, [c for pool in pools_list for c in pool.checkpoints],
                                       unlearning=False)
    warnings = []
    if "ceiling" not in pools and len(pools["retrained"].checkpoints) >= 4:
        half = len(pools["retrained"].checkpoints) // 2
        warnings.append(f"the ceiling row is the retrained pool's halves, {half} models a side: its ε scale "
                        f"(⌈ln({half} − 1)⌉ = {epsilon_resolution(half)}) is coarser than the audited pool's; give "
                        f"--ceiling an independent oracle pool of {len(pools['unlearned'].checkpoints)} models for a "
                        f"ceiling at full size")
    fewest = min(len(pool.checkpoints) for pool in pools.values())
    if fewest < FEW_MODELS:
        warnings.append(f"{fewest} models in the smallest pool: ε is resolved only up to ⌈ln({fewest} − 1)⌉ = "
                        f"{epsilon_resolution(fewest)} (buckets of {BUCKET_WIDTH:g}), so the forget score is coarse; "
                        f"{FEW_MODELS} or more models per pool are advised")
    size = min(cfg.control_size or len(forget_set.indices), data.num_train - len(forget_set.indices),
               len(data.test_labels))
    parts = _control_samples(data, forget_set.indices, classes, size, cfg.seed)
    target = select_device(cfg.device)
    # a manipulated F is compared with unseen examples manipulated alike: what F looks like to a model that never
    # saw it (as tune's oracle-free reference)
    matched_view = None if forget_set.manipulation is None else \
        forget_set.manipulation.view_unseen(data, parts["matched"], cfg.seed).to(target)
    data = data.to(target)
    measure(pools_list, data, parts, forget_set.indices, cfg.batch_size, target, quiet, matched_view)
    data = data.to(torch.device("cpu"))
    rows = audit_rows(pools, cfg.bootstrap, cfg.seed)
    if not quiet:
        for table in render(rows, pools["retrained"].mean_accuracy(), cfg.bootstrap):
            stderr.print(table)
        for warning in warnings:
            stderr.print(f"[yellow]warning: {warning}[/yellow]")
    if per_example is not None:
        write_output(per_example, per_example_csv(rows[0], pools, forget_set, data.train_labels[forget_set.indices],
                                                  classes), binary=False)
    if plot is not None:
        write_output(plot, plot_png(rows, pools, forget_set.indices))
    if json_output is not None:
        print_json(audit_document(rows, pools, forget_set, reference, cfg, size, warnings), json_output)
