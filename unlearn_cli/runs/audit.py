"""Auditing pools: read a pool of unlearned checkpoints and one of retrained ones (with, optionally, the originals
and an independent ceiling), check that they belong to the forget set, measure φ of every model example by example,
and compare the pools row by row (docs/audit.md) into the audit document (unlearn-audit/1). With `relearn`, each
model is also relearned on a part of the forget set and the forget-set rows carry the relearn gap of the pool
against the retrained one (docs/relearn.md).

Steps, so that a caller can check its outputs against the pools' files and size its progress display between
them: `load_pools` (checkpoints read and checked, weights dropped), `prepare_audit` (data, forget set, lineage,
warnings, the seeded control samples), `measure_pools` (one model in memory at a time, `on_step(status)` after
each), `audit_rows` (the comparisons, with seeded bootstrap intervals) and `audit_document`.

Usage:
    from unlearn_cli.runs.audit import (AuditConfig, audit_document, audit_rows, check_config, load_pools,
                                        measure_pools, prepare_audit)
    cfg = AuditConfig(forget="forget.json", unlearned=["pool/del-*.safetensors"],
                      retrained=["pool/oracle-*.safetensors"])
    check_config(cfg)
    pools, paths = load_pools(cfg)                  # paths: flag -> the checkpoint files it named
    plan = prepare_audit(cfg, pools)                # plan.models: how many models measure_pools measures
    measure_pools(plan, on_step=print)
    rows = audit_rows(plan.pools, cfg.bootstrap, cfg.seed)
    document = audit_document(rows, plan)

With --memorization (docs/memorization.md), the forget examples are split by the memorization tercile of the training
set they fall in (`splits.terciles` of the scores), and every forget-set comparison gets a row per tercile: its part
is `forget:low`, `forget:mid` or `forget:high`, computed from the same per-model φ with the same bootstrap.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

import unlearn_cli
from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import LEVELS, retain_indices
from unlearn_cli.engine import predict, select_device
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.audit import (BOOTSTRAPPED, INTERVAL_LEVEL, RANGES, bootstrap, compare_pools, excess,
                                        halves, headline, normalized_score, percentile_interval, summarize)
from unlearn_cli.evaluate.epsilon import (BUCKET_WIDTH, DELTA, EPSILON_CAP, INTERVAL_SLACK, PEAKY_RATIO,
                                          epsilon_resolution, final_score, logit_scaled_confidence)
from unlearn_cli.evaluate.metrics import accuracy_percent
from unlearn_cli.evaluate.pool_attacks import KL_MAX_BINS, KL_PSEUDOCOUNT, kl_bins, likelihood_ratio_attack, standardize
from unlearn_cli.evaluate.provenance import run_identity
from unlearn_cli.evaluate.relearn import RelearnOptions, RelearnSplit, paired_gaps, relearn_curves, split_forget_set
from unlearn_cli.evaluate.results import AUDIT_FORMAT, finite_or_none
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import ForgetSet, read_forget_set
from unlearn_cli.limits import check_size
from unlearn_cli.lineage import check_audit_pools, data_as_trained, dataset_for
from unlearn_cli.runs.options import AuditConfig, check_audit_config as check_config  # noqa: F401
from unlearn_cli.runs.memorization import (MemorizationScores, check_cross_fit, check_scores_fit,
                                           read_memorization_source)
from unlearn_cli.tune.reference import tuning_parts

FEW_MODELS = 16  # below this many models per pool the ε buckets are coarse enough to warn
TERCILE_PARTS = tuple(f"forget:{level}" for level in LEVELS)  # the forget examples of each memorization tercile


@dataclass
class Pool:
    """One pool's models (metadata only) and, once measured, φ and accuracies of each model."""

    name: str
    checkpoints: list[Checkpoint]
    phi: dict[str, list[np.ndarray]] = field(default_factory=dict)  # part -> one [E] array per model
    # ("reference": every test example, what standardizes each model's φ for the normalized attack)
    accuracy: dict[str, list[float]] = field(default_factory=dict)  # forget / retain / test -> % per model
    relearn: dict[float, list[list[float]]] = field(default_factory=dict)  # lr -> per model, % on F ∖ A at each step

    def values(self, part: str) -> np.ndarray:  # [N, E]
        return np.stack(self.phi[part])

    def standardized(self, part: str) -> np.ndarray:  # [N, E]: each model's φ on its own scale
        return standardize(self.values(part), self.values("reference"))

    def relearn_curves(self, positions: list[int] | None = None) -> dict[float, np.ndarray]:
        """lr -> the relearning curves [N, S + 1] of the pool, or of its models at `positions` (empty: not
        relearned)."""
        return {rate: np.asarray(curves if positions is None else [curves[i] for i in positions], dtype=float)
                for rate, curves in self.relearn.items()}

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


def load_pools(cfg: AuditConfig) -> tuple[list[Pool], dict[str, list[str]]]:
    """The pools the options name, each model read once and checked, then its weights dropped (measured later, one
    model in memory at a time); and flag -> the paths it named. No file may be in two pools."""
    pools, paths = [], {}
    named = [("unlearned", cfg.unlearned, "--unlearned"), ("retrained", cfg.retrained, "--retrained"),
             ("original", cfg.original, "--original"), ("ceiling", cfg.ceiling, "--ceiling")]
    owner: dict[str, tuple[str, str]] = {}  # resolved path -> (flag, path as named)
    contents: dict[str, tuple[str, str]] = {}  # sha256 -> (flag, path): a copy under another name is the same model
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
            if checkpoint.sha256 in contents:
                other_flag, other = contents[checkpoint.sha256]
                where = f"{flag}" if other_flag == flag else f"{other_flag} and {flag}"
                raise UserError(f"{path} and {other} ({where}) hold the same model (sha256 "
                                f"{checkpoint.sha256[:12]}…); a pool counts each model once, so give each file once")
            contents[checkpoint.sha256] = (flag, path)
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


def _warnings(pools: dict[str, Pool]) -> list[str]:
    """What the pools' sizes leave coarse: a ceiling from the retrained pool's halves, ε buckets of few models."""
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
    return warnings


@dataclass
class ForgetTerciles:
    """The forget examples split by memorization tercile (of the whole training set's scores)."""

    scores: MemorizationScores
    values: torch.Tensor  # float64 [F]: each forget example's score (NaN: not scored)
    levels: torch.Tensor  # int64 [F]: its tercile, 0 low … 2 high, -1 unscored

    def parts(self, forget_indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """`forget:<level>` -> the forget examples of that tercile, for each tercile that holds any."""
        return {part: forget_indices[self.levels == level] for level, part in enumerate(TERCILE_PARTS)
                if bool((self.levels == level).any())}


def _forget_terciles(path: str, pools: dict[str, Pool], reference: Checkpoint, num_train: int,
                     forget_indices: torch.Tensor) -> ForgetTerciles:
    """The memorization scores of --memorization, checked against the data and the pools, at the forget examples."""
    scores = read_memorization_source(path, "--memorization")
    check_scores_fit(scores, reference.dataset, reference.dataset_kwargs, num_train)
    check_cross_fit(scores, {f"--{name}": pool.checkpoints for name, pool in pools.items()})
    levels = scores.levels()[forget_indices]
    if not bool((levels >= 0).any()):
        raise UserError(f"{scores.source}: scores none of the forget examples (its model never trained on them); "
                        f"give --memorization a model trained on them, or a reference estimate")
    return ForgetTerciles(scores, scores.values[forget_indices], levels)


@dataclass
class AuditPlan:
    """The pools checked against the forget set, and what measuring them needs."""

    cfg: AuditConfig
    pools: dict[str, Pool]  # name -> pool, in the order load_pools read them
    reference: Checkpoint  # the retrained pool's first model: the dataset and architecture recorded
    data: ImageData  # as the models were trained on it (a manipulated forget set's changes applied)
    forget_set: ForgetSet
    classes: torch.Tensor  # [F] the forget examples' true classes (the models may have trained on others)
    control_size: int  # examples in each of the retain and test samples
    parts: dict[str, torch.Tensor]  # part -> the examples it scores
    target: torch.device
    matched_view: ImageData | None  # for a manipulated forget set: the matched sample manipulated alike
    warnings: list[str]
    relearn_split: RelearnSplit | None = None  # with --relearn: the forget set's part finetuned on and the rest
    terciles: ForgetTerciles | None = None  # with --memorization

    @property
    def models(self) -> int:
        """How many models `measure_pools` measures."""
        return sum(len(pool.checkpoints) for pool in self.pools.values())


def prepare_audit(cfg: AuditConfig, pools_read: list[Pool]) -> AuditPlan:
    """Read the data and the forget set, check every pool against them, and draw the control samples (seeded by
    `cfg.seed`)."""
    pools = {pool.name: pool for pool in pools_read}
    reference = pools["retrained"].checkpoints[0]
    data = dataset_for(reference, cfg.data_root)
    forget_set = read_forget_set(cfg.forget, num_train=data.num_train, dataset=reference.dataset, override_flag=None)
    check_audit_pools({name: pool.checkpoints for name, pool in pools.items()}, forget_set, reference, data)
    classes = data.train_labels[forget_set.indices]  # true classes; the models may have trained on others
    data, forget_set = data_as_trained(data, forget_set, [c for pool in pools_read for c in pool.checkpoints],
                                       unlearning=False)
    warnings = _warnings(pools)
    retained, tested = data.num_train - len(forget_set.indices), len(data.test_labels)
    if cfg.control_size is not None and cfg.control_size > min(retained, tested):
        raise UserError(f"--control-size {cfg.control_size}: a control sample can hold at most "
                        f"{min(retained, tested):,} examples here (retain set {retained:,}, test set {tested:,}); give "
                        f"at most that, or leave it out for the forget set's size")
    size = min(cfg.control_size or len(forget_set.indices), retained, tested)
    parts = _control_samples(data, forget_set.indices, classes, size, cfg.seed)
    terciles = None
    if cfg.memorization is not None:
        terciles = _forget_terciles(cfg.memorization, pools, reference, data.num_train, forget_set.indices)
        parts.update(terciles.parts(forget_set.indices))
        unscored = int((terciles.levels < 0).sum())
        if unscored:
            warnings.append(f"{unscored} forget examples have no memorization score in {terciles.scores.source} (its "
                            f"model never trained on them): they are in no tercile's row")
    target = select_device(cfg.device)
    # a manipulated F is compared with unseen examples manipulated alike: what F looks like to a model that never
    # saw it (as tune's oracle-free reference)
    matched_view = None if forget_set.manipulation is None else \
        forget_set.manipulation.view_unseen(data, parts["matched"], cfg.seed).to(target)
    relearn_split = split_forget_set(forget_set.indices, cfg) if cfg.relearn else None
    return AuditPlan(cfg, pools, reference, data, forget_set, classes, size, parts, target, matched_view, warnings,
                     relearn_split, terciles)


def measure(pools: list[Pool], data, parts: dict[str, torch.Tensor], forget_indices: torch.Tensor,
            batch_size: int, target: torch.device, on_step: Callable[[str], None], matched_view=None,
            relearning: tuple[RelearnSplit, RelearnOptions] | None = None) -> None:
    """φ of every model on every part, and its forget / retain / test accuracy; one model in memory at a time;
    `on_step("pool file")` after each model.

    `matched_view`: for a manipulated forget set, the matched sample manipulated by the same rule (its test
    set: `Manipulation.view_unseen`), scored in place of the plain matched examples. `relearning`: the split and
    options of the relearning test, run on a copy of every model (`Pool.relearn`)."""
    retain = retain_indices(data.num_train, forget_indices)
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
            if relearning is not None:
                for rate, curve in relearn_curves(model, data, *relearning, target, batch_size).items():
                    pool.relearn.setdefault(rate, []).append(curve)
            del model, loaded
            for part, indices in parts.items():
                if part == "matched" and matched_view is not None:
                    continue
                logits, labels = ((train_logits, train_labels) if part in ("forget", "retain") + TERCILE_PARTS
                                  else (test_logits, test_labels))
                pool.phi.setdefault(part, []).append(
                    logit_scaled_confidence(logits[indices], labels[indices]).numpy())
            terciles = [(part, train_logits[parts[part]], train_labels[parts[part]]) for part in TERCILE_PARTS
                        if part in parts]
            for key, logits, labels in [("forget", train_logits[forget_indices], train_labels[forget_indices]),
                                        ("retain", train_logits[retain], train_labels[retain]),
                                        ("test", test_logits, test_labels)] + terciles:
                pool.accuracy.setdefault(key, []).append(accuracy_percent(logits, labels))
            on_step(f"{pool.name} {os.path.basename(checkpoint.source)}")


def measure_pools(plan: AuditPlan, on_step: Callable[[str], None] = lambda status: None) -> None:
    """`measure` every pool of the plan, the data on the plan's device meanwhile."""
    data = plan.data.to(plan.target)
    relearning = None if plan.relearn_split is None else (plan.relearn_split, plan.cfg)
    measure(list(plan.pools.values()), data, plan.parts, plan.forget_set.indices, plan.cfg.batch_size, plan.target,
            on_step, plan.matched_view, relearning)
    data.to(torch.device("cpu"))


@dataclass
class Side:
    """One side of a comparison: φ per part ([N, E]), the same standardized per model, mean accuracies (%), and
    the relearning curves per learning rate ([N, S + 1]; empty without --relearn)."""

    phi: dict[str, np.ndarray]
    standardized: dict[str, np.ndarray]
    accuracy: dict[str, float]
    relearn: dict[float, np.ndarray]


def _side(pool: Pool, positions: list[int] | None = None) -> Side:
    """A pool, or the models of it at `positions`, as one side of a comparison."""
    chosen = slice(None) if positions is None else positions
    parts = [part for part in pool.phi if part != "reference"]  # forget, retain, test, matched, the terciles
    return Side({part: pool.values(part)[chosen] for part in parts},
                {part: pool.standardized(part)[chosen] for part in parts}, pool.mean_accuracy(positions),
                pool.relearn_curves(positions))


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


def _comparisons(pools: dict[str, Pool]) -> list[tuple[str, str, str]]:
    """(row name, pool compared with the retrained one or "half", part) of every row, in the order reported."""
    comparisons = [("unlearned vs retrained", "unlearned", "forget")]
    if "original" in pools:
        comparisons.append(("original vs retrained", "original", "forget"))
    if "ceiling" in pools:
        comparisons.append(("ceiling vs retrained", "ceiling", "forget"))
    elif len(pools["retrained"].checkpoints) >= 4:  # halves of fewer than 2 models cannot be compared
        comparisons.append(("retrained ½ vs ½", "half", "forget"))
    forget_rows = list(comparisons)
    for part in TERCILE_PARTS:  # with --memorization: each forget row again on each tercile's examples
        if part in pools["retrained"].phi:
            level = part.split(":")[1]
            comparisons += [(f"{name} (forget, {level} memorization)", first, part) for name, first, _ in forget_rows]
    for part in ("retain", "test"):
        comparisons.append((f"unlearned vs retrained ({part} sample)", "unlearned", part))
        if "original" in pools:
            comparisons.append((f"original vs retrained ({part} sample)", "original", part))
    return comparisons


def _shown_accuracy(accuracy: dict[str, float], part: str) -> dict[str, float]:
    """The forget / retain / test accuracies of a row: on a tercile's row, its forget accuracy is the tercile's."""
    shown = {key: accuracy[key] for key in ("forget", "retain", "test")}
    if part in TERCILE_PARTS:
        shown["forget"] = accuracy[part]
    return shown


def _row(name: str, first_name: str, part: str, first: Side, second: Side, matched_size: int, resamples: int,
         seed: int) -> tuple[dict, dict | None]:
    """One comparison's row (its `normalized_score` still None), and its bootstrap draws (None without)."""
    num_models = min(len(first.phi[part]), len(second.phi[part]))
    per_example = compare_pools(first.phi[part], second.phi[part])
    row = {"name": name, "pool": first_name, "examples": part,
           "models": [len(first.phi[part]), len(second.phi[part])], **summarize(per_example, num_models),
           "accuracy": {"first": _shown_accuracy(first.accuracy, part),
                        "second": _shown_accuracy(second.accuracy, part)}}
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
    if first.relearn:  # the forget rows: the pool's relearning against the retrained pool's, model i with model i
        row["relearn"] = [{"lr": rate, **paired_gaps(first.relearn[rate], second.relearn[rate])}
                          for rate in first.relearn] if part == "forget" else None
    row["per_example"] = per_example
    row["normalized_score"] = None
    return row, draws


def audit_rows(pools: dict[str, Pool], resamples: int, seed: int) -> list[dict]:
    """Every comparison the audit reports, each with its per-example arrays (under "per_example").

    Every row carries bootstrap intervals of its numbers, from `resamples` draws of models and examples
    (seeded by `seed`: rows of pools of the same sizes draw the same model positions); the forget-set rows
    also carry the excess of each number over the matched sample. The ceiling is the independent oracle pool
    (--ceiling) against the retrained pool when given, else the retrained pool's halves against each other. The
    unlearned pool's rows on the forget set (and on each memorization tercile of it) carry the normalized score.
    """
    matched_size = pools["retrained"].values("matched").shape[1]
    rows, scores = [], {}  # scores: (pool, forget part) -> (forget score, its replicates or None)
    for name, first_name, part in _comparisons(pools):
        first, second = _sides(pools, first_name)
        row, draws = _row(name, first_name, part, first, second, matched_size, resamples, seed)
        if part in ("forget",) + TERCILE_PARTS:
            scores[first_name, part] = (row["forget_score"], None if draws is None else draws[part]["forget_score"])
        rows.append(row)
    for row in rows:  # the unlearned pool on the scale from the originals to the ceiling
        part = row["examples"]
        ceiling = scores.get(("ceiling", part), scores.get(("half", part)))
        if row["pool"] == "unlearned" and ("original", part) in scores and ceiling is not None:
            row["normalized_score"] = normalized_score(scores["unlearned", part], scores["original", part], ceiling)
    return rows


def _pool_block(pool: Pool, forget_set) -> dict:
    models = []
    for checkpoint in pool.checkpoints:
        identity = run_identity(checkpoint, forget_set)
        models.append({"source": checkpoint.source, "sha256": checkpoint.sha256, **identity})
    shared = {key: models[0][key] if all(m[key] == models[0][key] for m in models) else None
              for key in ("method", "strategy", "budget")}
    return {"size": len(models), **shared, "accuracy": pool.mean_accuracy(), "models": models}


def audit_document(rows: list[dict], plan: AuditPlan) -> dict:
    """The audit file's content (unlearn-audit/1): settings, pools, rows without their per-example arrays,
    warnings."""
    def clean(value):  # JSON has no NaN or infinity: null
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return finite_or_none(value)

    cfg, pools = plan.cfg, plan.pools
    return clean({
        "format": AUDIT_FORMAT, "unlearn_version": unlearn_cli.__version__, "forget": plan.forget_set.fields(),
        "dataset": plan.reference.describe_data(), "arch": plan.reference.arch,
        "settings": {"delta": DELTA, "epsilon_cap": EPSILON_CAP, "bucket_width": BUCKET_WIDTH,
                     "peaky_ratio": PEAKY_RATIO, "interval_slack": INTERVAL_SLACK,
                     "kl_bins": kl_bins(min(len(pool.checkpoints) for pool in pools.values())),
                     "kl_max_bins": KL_MAX_BINS, "kl_pseudocount": KL_PSEUDOCOUNT, "control_size": plan.control_size,
                     "seed": cfg.seed, "bootstrap": cfg.bootstrap, "interval_level": INTERVAL_LEVEL,
                     "matched_size": pools["retrained"].values("matched").shape[1],
                     "ceiling": "independent pool" if "ceiling" in pools else "retrained halves"},
        "pools": {name: _pool_block(pool, plan.forget_set) for name, pool in pools.items()},
        "rows": [{key: value for key, value in row.items() if key != "per_example"} for row in rows],
        "warnings": plan.warnings,
        **({} if plan.relearn_split is None else {"relearn": {
            **plan.relearn_split.fields(cfg), "pairing": "model i of a pool with model i of the retrained pool, "
                                                         "each sorted by seed",
            "curves": {name: [{"lr": rate, "models": curves.tolist(), "mean": curves.mean(axis=0).tolist()}
                              for rate, curves in pool.relearn_curves().items()] for name, pool in pools.items()}}}),
        **({} if plan.terciles is None else {"memorization": _terciles_block(plan)}),
    })


def forget_set_influence(pools: dict[str, Pool]) -> np.ndarray | None:
    """Per forget example, the originals' mean φ minus the retrained pool's: how much training on the forget set
    raised the confidence on it (a pool-based influence of the forget set, not a memorization estimate: those
    models did not train on random subsets). [F]; None without --original."""
    if "original" not in pools:
        return None
    return pools["original"].values("forget").mean(0) - pools["retrained"].values("forget").mean(0)


def _terciles_block(plan: AuditPlan) -> dict:
    """What the audit records of --memorization: the scores' origin and, per tercile, its forget examples, their
    mean score and their mean forget-set influence (with --original)."""
    terciles, influence = plan.terciles, forget_set_influence(plan.pools)
    levels = {}
    for level, name in enumerate(LEVELS):
        inside = (terciles.levels == level).numpy()
        levels[name] = {"examples": int(inside.sum()),
                        "mean_score": float(terciles.values.numpy()[inside].mean()) if inside.any() else None,
                        "influence": float(influence[inside].mean()) if influence is not None and inside.any() else None}
    return {**terciles.scores.record(), "unscored": int((terciles.levels < 0).sum()), "terciles": levels}
