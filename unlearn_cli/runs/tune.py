"""The search behind `unlearn tune`: every candidate of a grid localized, unlearned and scored, without an oracle
by default (tune/objectives.py) or by the average gap to one, as the DEL paper tunes; the candidates a cost cap
allows, the hopeless ones stopped early (successive halving on epochs), a grid whose choice is at its edge
extended; the choice as the config YAML that `localize --config` and `apply --config` read.

Without an oracle every candidate runs on K validation forget sets (`--validation-sets`, 3 by default): the given
one and K−1 more drawn by the split it records, each unlearned from the same original and scored against its own
test parts; a candidate's objective is the mean over the sets, its standard error that of the mean, and the
choice's stability says how many sets alone would have chosen the same (tune/selection.py). A candidate that
calibrates (`--grid calibrate=false,true`, or `--calibrate`) ends each run with the calibration step
(runs/calibrate.py), its fitted scale recorded beside its score.

A search is checked before any work (`plan_search`: every candidate's options), then run (`run_search`: read the
files, draw the validation forget sets, score the original, screen the candidates under the cap, run them).

Usage:
    from unlearn_cli.runs.tune import TuneConfig, objective_weights, plan_search, run_search
    cfg = TuneConfig(model="original.safetensors", forget="forget.json", strategy="del", budget=0.3)
    plan = plan_search(cfg, objective_weights(cfg), parse_grid(["lr=0.01,0.1", "epochs=5,10"]))
    result = run_search(plan, note=print)          # result.ranked: every candidate's last trial, best first
    Path("best.yaml").write_bytes(result.yaml())    # localize:/apply: sections and the search's record
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch
import yaml
from torch import nn

from unlearn_cli.cost import WorkMeter
from unlearn_cli.data import ImageData
from unlearn_cli.data.splits import KINDS as SPLIT_KINDS
from unlearn_cli.data.splits import LEVELS, MEMORIZATION
from unlearn_cli.engine import FastPath, predict, select_device
from unlearn_cli.errors import UserError, example, flag
from unlearn_cli.evaluate.metrics import model_metrics, shadow_sets
from unlearn_cli.io.checkpoint import Checkpoint, load_checkpoint
from unlearn_cli.io.forget import ForgetSet, read_forget_set
from unlearn_cli.io.hashing import sha256_indices
from unlearn_cli.limits import check_size
from unlearn_cli.lineage import check_fits_data, check_oracle, data_as_trained, dataset_for
from unlearn_cli.runs.options import VALIDATION_SETS, TuneConfig  # noqa: F401
from unlearn_cli.localize import SEARCHABLE, LocalizeSettings, resolve_settings
from unlearn_cli.methods import SetSizes, fitted, get_method, method_config, method_options, most_epochs_within
from unlearn_cli.methods.calibration import undepleted_classes
from unlearn_cli.runs.calibrate import calibrate, calibration_examples, confidence, fitted_scale
from unlearn_cli.runs.localize import MaskFailed, compute_mask
from unlearn_cli.runs.memorization import read_memorization_source
from unlearn_cli.runs.unlearn import retrain_work, unlearn, unlearn_data
from unlearn_cli.tune import (Candidate, OracleFreeWeights, Outputs, Trial, TuningParts, cap_share,
                              cheapest_within_standard_error, draw_validation_sets, expand_grid, extend_edges,
                              halve_test_set, mean_score, objective_standard_error, oracle_free_score, oracle_score,
                              planned_runs, rank_candidates, retain_sample, selection_stability, set_objectives,
                              successive_halving, tuning_parts)
from unlearn_cli.tune.depletion import class_drops, learning_curve

LOCALIZE_OPTIONS = SEARCHABLE  # grid keys that make the mask: the localization options but strategy and seed
RUN_OPTIONS = ("calibrate",)  # grid keys of the run itself: neither a localization nor a method option
SCALES = ("calibration_scale", "oracle_scale")  # what a candidate that calibrates records beside its score

Progress = Callable[[str, int], ContextManager[Optional[Callable[[dict], None]]]]  # (description, total) -> on_step


def objective_weights(cfg: TuneConfig) -> OracleFreeWeights:
    """The oracle-free objective's weights: `cfg.weights` over the defaults, and the damage allowance; checked."""
    known = set(OracleFreeWeights.PARTS)
    unknown = sorted(set(cfg.weights) - known)
    if unknown:
        raise UserError(f"--weight {unknown[0]}: choose among {', '.join(OracleFreeWeights.PARTS)}")
    for key, value in cfg.weights.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise UserError(f"--weight {key}={value!r}: a weight is a number ≥ 0")
    return OracleFreeWeights(damage_allowance=cfg.allowance).replace({k: float(v) for k, v in cfg.weights.items()})


def validation_set_count(cfg: TuneConfig) -> int:
    """K, the forget sets a search scores on: --validation-sets, 3 by default; 1 with an oracle (a UserError when
    more are asked for: an oracle is retrained without one forget set)."""
    if cfg.oracle is not None:
        if cfg.validation_sets not in (None, 1):
            raise UserError(f"{flag('validation_sets')} {cfg.validation_sets}: --oracle scores on the one forget set "
                            f"its oracle was trained without; pass {example('validation_sets', 1)} or drop it")
        return 1
    return VALIDATION_SETS if cfg.validation_sets is None else cfg.validation_sets


def _split_settings(settings: dict) -> tuple[dict, dict]:
    """(localize options, method options) of a candidate's settings (its run options, `calibrate`, in neither)."""
    return ({key: value for key, value in settings.items() if key in LOCALIZE_OPTIONS},
            {key: value for key, value in settings.items() if key not in LOCALIZE_OPTIONS and key not in RUN_OPTIONS})


def _calibrates(cfg: TuneConfig, settings: dict) -> bool:
    """Whether a candidate ends its runs with the calibration step: its grid value, else --calibrate."""
    return bool(settings.get("calibrate", cfg.calibrate))


def _mask_key(localize_values: dict) -> tuple:
    """The key of a candidate's localization settings: candidates with the same localization options share a mask
    on each validation forget set."""
    return tuple(sorted(localize_values.items()))


def _method_values(cfg: TuneConfig, method_values: dict) -> dict:
    """A candidate's method options over the fixed ones, an epochs share of the cap (`cap/2`) read as one epoch."""
    values = {"seed": cfg.seed, **cfg.params, **method_values}
    if cap_share(values.get("epochs")) is not None:
        values["epochs"] = 1
    return values


def _check_candidates(cfg: TuneConfig, candidates: list[Candidate]) -> dict[tuple, LocalizeSettings | None]:
    """Every candidate's options, checked before any work; -> the localization settings per distinct mask."""
    get_method(cfg.method)
    masks = {}
    for candidate in candidates:
        localize_values, method_values = _split_settings(candidate.settings)
        method_config(cfg.method, _method_values(cfg, method_values))
        key = _mask_key(localize_values)
        if cfg.strategy is None:
            if localize_values:
                raise UserError(f"--grid {next(iter(localize_values))}: a localization option needs --strategy")
            masks[key] = None
        elif key not in masks:
            settings = LocalizeSettings(strategy=cfg.strategy, seed=cfg.seed,
                                        **{"budget": cfg.budget, **localize_values})
            masks[key] = resolve_settings(settings)
    return masks


@dataclass
class SearchPlan:
    """A search checked before any work: its config, objective weights, grid (extended in place as the search
    goes), candidates, the localization settings of each distinct mask (None: no mask), and K, the validation
    forget sets each candidate is scored on."""

    cfg: TuneConfig
    weights: OracleFreeWeights
    search_space: dict
    candidates: list[Candidate]
    mask_settings: dict[tuple, LocalizeSettings | None]
    sets: int = 1

    @property
    def calibrating(self) -> bool:
        """Whether any candidate ends its runs with the calibration step."""
        return self.cfg.calibrate or any(self.search_space.get("calibrate", []))


def plan_search(cfg: TuneConfig, weights: OracleFreeWeights, search_space: dict) -> SearchPlan:
    """The grid's candidates, every option checked (a grid key that is neither the method's option nor a
    localization one, a value out of range) before any file is read."""
    options = method_options(cfg.method or "rft")
    unknown = [key for key in search_space if key not in LOCALIZE_OPTIONS and key not in options
               and key not in RUN_OPTIONS]
    if unknown:
        raise UserError(f"--grid {unknown[0]}: method {cfg.method!r} has no such option, nor is it a localization "
                        f"option ({', '.join(LOCALIZE_OPTIONS)}) or {', '.join(RUN_OPTIONS)}")
    wrong = [value for value in search_space.get("calibrate", []) if not isinstance(value, bool)]
    if wrong:
        raise UserError(f"--grid calibrate={wrong[0]}: calibrate is true or false, e.g. --grid calibrate=false,true")
    sets = validation_set_count(cfg)
    check_size(math.prod(len(values) for values in search_space.values()), "candidates", "--grid", "number of candidates")
    candidates = expand_grid(search_space)
    return SearchPlan(cfg, weights, search_space, candidates, _check_candidates(cfg, candidates), sets)


@dataclass
class _ValidationSet:
    """One forget set a search scores on: as it is unlearned, the split seed it was drawn with (None: the given
    file's, which may record none), the test parts its objective reads, the retain sample S (`retain_fit`) and the
    calibration examples V′ (`confidence`, and the calibration step)."""

    forget_set: ForgetSet
    seed: int | None
    parts: TuningParts
    retain: torch.Tensor
    examples: torch.Tensor
    confidence_scored: bool  # V′ holds two classes or more: the `confidence` part is scored on it
    depletes: bool  # F removes a class's share beyond the calibration's rule (methods/calibration.py)
    drops: torch.Tensor | None = None  # Δ̂_c [C] when the depletion estimate is on (`_estimate_depletion`)
    forget_drop: float | None = None  # Σ_c w_c Δ̂_c, points

    def record(self) -> dict:
        """What the YAML says of the set."""
        dropped = {} if self.forget_drop is None else {"forget_drop": self.forget_drop}
        return {"seed": self.seed, "forget_sha256": self.forget_set.sha256, "size": len(self.forget_set.indices),
                "reference_size": len(self.parts.reference), "validation_size": len(self.parts.validation), **dropped}


def _redrawn(forget_set: ForgetSet, train_labels: torch.Tensor, count: int) -> list[tuple[int | None, torch.Tensor]]:
    """(split seed, indices) of the `count` validation forget sets: the given one, then those its recorded split
    draws with the seeds after its own (tune/reference.py `draw_validation_sets`); one-line UserErrors when the
    set cannot be redrawn (a manipulation the model was trained on, no recorded split) or its split cannot give
    `count` distinct sets."""
    info = forget_set.info or {}
    if count == 1:
        return [(info.get("seed"), forget_set.indices)]
    asked = f"{flag('validation_sets')} {count}"
    fix = f"pass {example('validation_sets', 1)}"
    if forget_set.manipulation is not None:
        raise UserError(f"{asked}: {forget_set.source} carries a {forget_set.manipulation.kind} manipulation, which "
                        f"only a model trained on it unlearns, so no other forget set can be drawn for it; {fix}")
    kind, fraction, classes, seed = (info.get(key) for key in ("kind", "fraction", "classes", "seed"))
    if kind == MEMORIZATION and isinstance(fraction, float) and isinstance(seed, int):
        return draw_validation_sets(train_labels, forget_set.indices, kind, fraction, None, seed, count,
                                    what=f"the split of {forget_set.source}",
                                    memorization=_memorization_split(forget_set, len(train_labels), asked, fix))
    if (kind not in SPLIT_KINDS or not isinstance(fraction, (int, float)) or isinstance(fraction, bool)
            or not isinstance(seed, int) or isinstance(seed, bool)
            or not (classes is None or (isinstance(classes, list)
                                        and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)))):
        raise UserError(f"{asked}: {forget_set.source} records no split (kind, fraction, classes, seed) to draw more "
                        f"forget sets by; make it with `unlearn split`, or {fix}")
    return draw_validation_sets(train_labels, forget_set.indices, kind, fraction, classes, seed, count,
                                what=f"the split of {forget_set.source}")


def _memorization_split(forget_set: ForgetSet, num_train: int, asked: str, fix: str) -> tuple[torch.Tensor, str]:
    """(the scores, the level) a memorization forget set was drawn by: its recorded source, read again and checked to
    be the file it was drawn from."""
    record = (forget_set.info or {}).get("memorization") or {}
    level, source, sha256 = (record.get(key) for key in ("level", "source", "sha256"))
    if level not in LEVELS or not isinstance(source, str) or not isinstance(sha256, str):
        raise UserError(f"{asked}: {forget_set.source} records no memorization source to draw more forget sets by; "
                        f"make it with `unlearn split --kind memorization`, or {fix}")
    if not os.path.isfile(source):
        raise UserError(f"{asked}: {forget_set.source} was drawn by the memorization of {source}, which is not there "
                        f"to draw more forget sets by; run from where that path is found, or {fix}")
    scores = read_memorization_source(source, "the forget set's memorization source")
    if scores.sha256 != sha256 or len(scores.values) != num_train:
        raise UserError(f"{asked}: {source} is not the file {forget_set.source} was drawn by (its content changed); "
                        f"restore it, or {fix}")
    return scores.values, level


@dataclass
class _Inputs:
    """What a search reads: the parent (on the device), its data as trained, the validation forget sets (the given
    one first), the oracle, and the set sizes its cost depends on."""

    target: torch.device
    parent: Checkpoint
    data: ImageData
    sets: list[_ValidationSet]
    oracle: Checkpoint | None
    fast: FastPath
    model: nn.Module  # the parent's model, on the device
    sizes: SetSizes

    @property
    def forget_set(self) -> ForgetSet:
        """The given forget set, as it is unlearned."""
        return self.sets[0].forget_set

    @classmethod
    def read(cls, cfg: TuneConfig, count: int = 1) -> "_Inputs":
        target = select_device(cfg.device)
        parent = load_checkpoint(cfg.model)
        clean = dataset_for(parent, cfg.data_root)
        whole = read_forget_set(cfg.forget, num_train=clean.num_train, dataset=parent.dataset)
        if cfg.weights.get("trigger", 0) > 0 and (whole.manipulation is None or whole.manipulation.kind != "poison"):
            raise UserError(f"--weight trigger={cfg.weights['trigger']}: {whole.source} carries no poison, so there "
                            f"is no trigger to score; drop --weight trigger, or tune on a forget set of `unlearn split "
                            f"--kind poison`")
        drawn = _redrawn(whole, clean.train_labels, count)  # the parent's dataset: the one the file was checked on
        data, forget_set = data_as_trained(clean, whole, [parent], unlearning=True)
        oracle_checkpoint = None
        if cfg.oracle is not None:
            oracle_checkpoint = load_checkpoint(cfg.oracle)
            check_fits_data(oracle_checkpoint, parent, data, "the oracle")
            check_oracle(oracle_checkpoint, whole, allow_mismatch=False)  # trained without every manipulated example
        forget_sets = [forget_set] + [
            ForgetSet(indices, sha256_indices(indices), parent.dataset, f"{whole.source} redrawn with seed {seed}")
            for seed, indices in drawn[1:]]
        sets = []
        for (seed, _), one in zip(drawn, forget_sets):
            parts = tuning_parts(data.test_labels, clean.train_labels[one.indices], cfg.seed)  # F's true classes
            if oracle_checkpoint is None and len(parts.reference) == 0:
                raise UserError(f"{one.source}: the test set holds no example of the forget set's classes, so there "
                                f"is no reference to score against; tune with --oracle instead")
            examples = calibration_examples(data, one.indices, cfg.seed)
            depletes = not bool(undepleted_classes(clean.train_labels, one.indices, parent.num_classes)[
                torch.unique(clean.train_labels[one.indices])].all())
            sets.append(_ValidationSet(one, seed, parts, retain_sample(data.num_train, one.indices, cfg.seed),
                                       examples, len(torch.unique(data.test_labels[examples])) >= 2, depletes))
        fast = FastPath.for_device(target, None, None, False)
        data.to(target, fast.memory_format)
        original_model = parent.model.to(target)
        sizes = SetSizes(len(forget_set.indices), data.num_train - len(forget_set.indices), data.num_train,
                         parent.config)
        return cls(target, parent, data, sets, oracle_checkpoint, fast, original_model, sizes)


def _estimate_depletion(cfg: TuneConfig, inputs: _Inputs) -> bool:
    """With --depletion on (auto: when a set depletes a class; never with an oracle or a manipulated F, whose
    reference is manipulated unseen data), fill each set's Δ̂_c from one learning curve of the parent on the tuning
    half of the test set (tune/depletion.py), which serves every set; -> whether it ran. Its work is the caller's
    to count."""
    if cfg.oracle is not None and cfg.depletion == "on":
        raise UserError(f"{flag('depletion')} on: with --oracle a candidate is scored by its gap to the oracle, which "
                        f"needs no estimate of it; drop {flag('depletion')} or --oracle")
    if cfg.oracle is not None or cfg.depletion == "off" or (
            cfg.depletion == "auto" and not any(one.depletes for one in inputs.sets)):
        return False
    if inputs.forget_set.manipulation is not None:
        if cfg.depletion == "on":
            raise UserError(f"{flag('depletion')} on: {inputs.forget_set.source} carries a "
                            f"{inputs.forget_set.manipulation.kind} manipulation, whose reference is unseen data "
                            f"manipulated the same way, not a depleted class; pass {example('depletion', 'off')}")
        return False
    data, target = inputs.data, inputs.target
    tuning_half = halve_test_set(data.test_labels, cfg.seed)[0]
    curve = learning_curve(inputs.parent, data, tuning_half, seed=cfg.seed, device=target, fast=inputs.fast)
    for one in inputs.sets:
        estimate = class_drops(inputs.parent, data, one.forget_set.indices, tuning_half, curve=curve)
        one.drops = estimate.drops
        one.forget_drop = estimate.forget_drop(data.train_labels[one.forget_set.indices])
    return True


def _outputs(model, data, one: _ValidationSet, device, manipulated=None) -> Outputs:
    """Logits on F, R and V, on the retain sample S and on V′ (left out when it holds fewer than two classes):
    the reported part of the test set is never looked at. With `manipulated` (a manipulated F: (its
    manipulation, data whose test set is R manipulated the same way)), R is that, and R as it is goes to `damage`
    (and, for a poison, to the trigger's floor)."""
    parts = one.parts
    forget = predict(model, data.batches("train", one.forget_set.indices, 512, device=device))
    reference = predict(model, data.batches("test", parts.reference, 512, device=device))
    validation = predict(model, data.batches("test", parts.validation, 512, device=device))
    retain = predict(model, data.batches("train", one.retain, 512, device=device))
    confident = (predict(model, data.batches("test", one.examples, 512, device=device)) if one.confidence_scored
                 else (None, None))
    extra = {"retain_logits": retain[0], "retain_labels": retain[1], "confidence_logits": confident[0],
             "confidence_labels": confident[1], "forget_drops": one.drops}
    if manipulated is None:
        return Outputs(*forget, *reference, *validation, **extra)
    manipulation, manipulated_reference = manipulated
    return Outputs(*forget, *predict(model, manipulated_reference.batches("test", batch_size=512, device=device)),
                   *validation, *reference,
                   trigger_target=manipulation.target if manipulation.kind == "poison" else None, **extra)


@dataclass
class _Scoring:
    """How a search scores a candidate model on a validation forget set: `score(model, position)`; and, for a
    candidate that calibrates, `calibrate(model, position)`, the calibration step against the original's φ on the
    set's V′ (an oracle's too in research mode, to record the scale it would choose). The original's outputs, the
    oracle's metrics and the targets are computed once, before any candidate."""

    mode: str  # "oracle-free" or "oracle"
    score: Callable[[nn.Module, int], dict]
    targets: list[torch.Tensor]  # the original's φ on each set's V′ (empty: no candidate calibrates)
    oracle_targets: list[torch.Tensor]  # the oracle's (research mode)
    inputs: "_Inputs"

    def calibrate(self, model: nn.Module, position: int) -> dict:
        """Fold the fitted scale into `model`; -> {"calibration_scale", and with an oracle "oracle_scale": the
        scale fitted against the oracle's φ on the same examples, before folding}."""
        data, examples, target = self.inputs.data, self.inputs.sets[position].examples, self.inputs.target
        record = {}
        if self.oracle_targets:
            record["oracle_scale"] = fitted_scale(model, self.oracle_targets[position], data, examples, target)
        return {"calibration_scale": calibrate(model, self.targets[position], data, examples, target), **record}


def _scoring(plan: SearchPlan, inputs: _Inputs) -> _Scoring:
    """The objective's name and a candidate model's score on each validation forget set, the original's outputs
    or the oracle's metrics (and the calibration targets, when a candidate calibrates) computed once here."""
    cfg, data, target = plan.cfg, inputs.data, inputs.target
    targets, oracle_targets = [], []
    if plan.calibrating:
        targets = [confidence(inputs.model, data, one.examples, target) for one in inputs.sets]
        if inputs.oracle is not None:
            oracle_model = inputs.oracle.model.to(target)
            oracle_targets = [confidence(oracle_model, data, one.examples, target) for one in inputs.sets]
    if inputs.oracle is None:
        # unseen examples manipulated like F, when F is manipulated: what F looks like to a model that never saw it
        manipulation = inputs.forget_set.manipulation  # only the given set may carry one (K = 1)
        manipulated = None if manipulation is None else (
            manipulation, manipulation.view_unseen(data, inputs.sets[0].parts.reference, cfg.seed))
        original_outputs = [_outputs(inputs.model, data, one, target, manipulated) for one in inputs.sets]

        def oracle_free(model, position: int) -> dict:
            outputs = _outputs(model, data, inputs.sets[position], target, manipulated)
            original = original_outputs[position]
            return {**oracle_free_score(outputs, original, plan.weights),
                    "objective_se": objective_standard_error(outputs, original, plan.weights, seed=cfg.seed)}

        return _Scoring("oracle-free", oracle_free, targets, oracle_targets, inputs)
    (one,) = inputs.sets  # one oracle, one forget set
    scored = data.test_subset(one.parts.tuning)  # as without an oracle, the reported half stays unseen
    members, nonmembers = shadow_sets(scored, one.forget_set.indices, cfg.seed)

    def metrics_of(model) -> dict:
        return model_metrics(model, scored, one.forget_set.indices, members, nonmembers, cfg.seed, device=target)

    oracle_metrics = metrics_of(inputs.oracle.model.to(target))
    return _Scoring("oracle", lambda model, position: oracle_score(metrics_of(model), oracle_metrics), targets,
                    oracle_targets, inputs)


def _cost_cap(cfg: TuneConfig, reference: int | None, source: str, search_space: dict,
              note: Callable[[str], None]) -> float | None:
    """The cap a search runs under: --max-cost, or None when the parent records no recipe to measure cost against
    (an error when the grid asks for a share of the cap)."""
    epochs_values = search_space.get("epochs", [])
    if reference is None:
        if any(cap_share(value) is not None for value in epochs_values):
            raise UserError(f"--grid epochs=cap: {source} records no training epochs, so there is no retraining cost "
                            f"to take a share of; give epochs as numbers")
        note(f"note: {source} records no training epochs; candidates run without a cost cap")
        return None
    if cfg.max_cost > 1:
        note(f"note: --max-cost {cfg.max_cost:g} lets a candidate cost more than retraining, which is exact at 1")
    return cfg.max_cost


@dataclass
class _CostCap:
    """The cost cap a search runs under: which candidates fit it, and at what predicted cost ×retrain."""

    cfg: TuneConfig
    sizes: SetSizes
    reference: int | None  # retraining's work; None: the parent records no recipe, so there is no cap
    cap: float | None
    mask_for: Callable  # localization key -> (the given forget set's mask, or the UserError it raised; its work)

    def settle(self, candidate: Candidate) -> tuple[Candidate, float | None] | str:
        """(the candidate with an epochs share of the cap made a number, its predicted cost ×retrain), or why it
        is not run: over the cap."""
        cfg, sizes, reference, cap = self.cfg, self.sizes, self.reference, self.cap
        localize_values, method_values = _split_settings(candidate.settings)
        _, localize_units = self.mask_for(_mask_key(localize_values))
        method_cfg = method_config(cfg.method, _method_values(cfg, method_values))
        share = cap_share(method_values.get("epochs"))
        if share is not None:
            most = most_epochs_within(cfg.method, method_cfg, sizes, localize_units, cap * reference)
            if most < 1:
                return f"{candidate.label()} (one epoch already costs more)"
            candidate = Candidate(candidate.index, {**candidate.settings, "epochs": max(1, math.floor(most * share))})
            method_cfg = dataclasses.replace(method_cfg, epochs=candidate.settings["epochs"])
        if reference is None:
            return candidate, None
        _, predicted, within = fitted(cfg.method, method_cfg, sizes, localize_units, reference,
                                      math.inf if cap is None else cap)
        if not within:
            return f"{candidate.label()} ({predicted / reference:.2f}×)"
        return candidate, predicted / reference

    def screen(self, candidates: list[Candidate]) -> tuple[list[Candidate], dict[int, float | None], list[str]]:
        """(the candidates that fit, renumbered, with epochs shares made numbers and duplicates merged — cap/2 and
        cap/4 may agree; candidate index -> predicted cost ×retrain; a line for each one over the cap)."""
        settled, costs, over_cap = [], {}, []
        for candidate in candidates:
            outcome = self.settle(candidate)
            if isinstance(outcome, str):
                over_cap.append(outcome)
            elif outcome[0].settings not in [kept.settings for kept in settled]:
                costs[len(settled)] = outcome[1]
                settled.append(Candidate(len(settled), outcome[0].settings))
        return settled, costs, over_cap


class _Candidates:
    """A search's candidates run: one mask per distinct localization and validation forget set (computed when first
    asked for, on a copy of the parent), each candidate fitted to the cap, unlearned from a copy of the parent on
    every set and scored, its score the mean over the sets."""

    def __init__(self, plan: SearchPlan, inputs: _Inputs, reference: int | None, cap: float | None,
                 scoring: _Scoring):
        self.plan, self.inputs, self.scoring = plan, inputs, scoring
        self.mask_settings = dict(plan.mask_settings)
        self.masks: dict[tuple, tuple] = {}  # (validation set, localization key) -> (mask or UserError, its work)
        self.cost_cap = _CostCap(plan.cfg, inputs.sizes, reference, cap, self.mask_for)
        self.costs: dict[int, float | None] = {}  # candidate index -> predicted cost ×retrain

    def mask_for(self, key: tuple, position: int = 0) -> tuple:
        """(the mask of these localization settings on validation forget set `position`, or the UserError computing
        it raised; its work)."""
        if (position, key) not in self.masks:
            settings, inputs = self.mask_settings[key], self.inputs
            if settings is None:
                self.masks[position, key] = (None, None)
            else:
                try:
                    mask, work = compute_mask(copy.deepcopy(inputs.model), inputs.data,
                                              inputs.sets[position].forget_set.indices, settings,
                                              arch=inputs.parent.arch, device=inputs.target)
                except MaskFailed as failed:
                    mask, work = failed, failed.work
                self.masks[position, key] = (mask, work.units)
        return self.masks[position, key]

    def run(self, candidate: Candidate, fraction: float) -> Trial:
        """The candidate run on `fraction` of its epochs on every validation forget set and scored by the mean; a
        failure on any set (its mask, its method, weights that became NaN or Inf, a calibration that cannot be
        fitted) is the trial's, not the search's."""
        cfg, inputs, cap = self.plan.cfg, self.inputs, self.cost_cap
        started = time.perf_counter()

        def trial(**outcome) -> Trial:
            return Trial(candidate, fraction, seconds=time.perf_counter() - started,
                         cost=self.costs.get(candidate.index), **outcome)

        localize_values, method_values = _split_settings(candidate.settings)
        method_cfg = method_config(cfg.method, _method_values(cfg, method_values))
        if cap.cap is not None:  # retrain: its recipe compressed to the cap
            method_cfg = fitted(cfg.method, method_cfg, inputs.sizes, None, cap.reference, cap.cap)[0]
        if fraction < 1 and hasattr(method_cfg, "epochs") and method_cfg.epochs:
            method_cfg = dataclasses.replace(method_cfg, epochs=max(1, math.ceil(method_cfg.epochs * fraction)))
        scores = []
        for position, one in enumerate(inputs.sets):
            where = "" if len(inputs.sets) == 1 else f"validation forget set {position + 1}: "
            mask, _ = self.mask_for(_mask_key(localize_values), position)
            if isinstance(mask, UserError):
                return trial(failure=where + str(mask))
            data = unlearn_data(inputs.data, one.forget_set.indices, inputs.parent, inputs.target, inputs.fast)
            try:
                unlearned = unlearn(cfg.method, copy.deepcopy(inputs.model), data, mask, method_cfg)
                if not all(bool(torch.isfinite(p).all()) for p in unlearned.parameters()):
                    raise UserError("the weights became NaN or Inf")
                scale = self.scoring.calibrate(unlearned, position) if _calibrates(cfg, candidate.settings) else {}
                scores.append({**self.scoring.score(unlearned, position), **scale})
            except UserError as error:
                return trial(failure=where + str(error))
        return trial(score=mean_score(scores), set_scores=scores if len(scores) > 1 else [])

    def admit(self, candidate: Candidate) -> bool:
        """Whether an edge extension is run: within its options' range and the cost cap."""
        try:
            self.mask_settings.update(_check_candidates(self.plan.cfg, [candidate]))
        except UserError:  # past the option's range: the edge is the limit
            return False
        outcome = self.cost_cap.settle(candidate)
        if isinstance(outcome, str):  # past the cost cap
            return False
        self.costs[candidate.index] = outcome[1]
        return True

    def search(self, progress: Progress, note: Callable[[str], None]) -> tuple[list[Trial], dict]:
        """(every trial, the values each option's grid was extended by): the candidates within the cap, halved
        on epochs, then the grid extended while the choice is at its edge."""
        cfg, search_space, cap = self.plan.cfg, self.plan.search_space, self.cost_cap.cap
        candidates, self.costs, over_cap = self.cost_cap.screen(self.plan.candidates)
        if not candidates:
            raise UserError(f"--max-cost {cap:g}: no candidate fits the cap ({'; '.join(over_cap[:3])}); raise "
                            f"--max-cost, or search fewer epochs")
        if over_cap:
            note(f"--max-cost {cap:g}: not run, over the cap: {'; '.join(over_cap)}")
        # A quarter run of an 8-epoch candidate would compete with a quarter run of a 32-epoch one (8 epochs): when
        # epochs are searched, halving on them favours the longer candidates, so every candidate runs in full.
        halving_possible = cfg.halving and "epochs" in method_options(cfg.method) and "epochs" not in search_space
        rungs = (0.25, 0.5, 1.0) if halving_possible else (1.0,)
        with progress(f"tune {cfg.method}", planned_runs(len(candidates), rungs)) as on_step:
            done = {"runs": 0, "total": planned_runs(len(candidates), rungs)}

            def reported(candidate: Candidate, fraction: float) -> Trial:
                trial = self.run(candidate, fraction)
                done["runs"] += 1
                if on_step is not None:
                    on_step({"step": done["runs"], "total_steps": max(done["total"], done["runs"])})
                return trial

            trials = successive_halving(candidates, reported, rungs)
            extended = extend_edges(search_space, trials, reported, self.admit, cfg.extend)
        return trials, extended


@dataclass
class TuneResult:
    """A search's outcome: every candidate's last trial, best first; the chosen one (None: every one failed);
    the objective's name; what the YAML records of the inputs and of the search (its cap and its own work)."""

    plan: SearchPlan
    ranked: list[Trial]
    chosen: Trial | None
    mode: str  # "oracle-free" or "oracle"
    provenance: dict
    search: dict

    def yaml(self) -> bytes:
        """The chosen settings as a config YAML (`best_yaml`); a UserError when every candidate failed."""
        if self.chosen is None:
            raise UserError(f"every candidate failed ({self.ranked[0].failure}); try lower learning rates or larger "
                            f"budgets")
        return best_yaml(self.plan.cfg, self.chosen, self.ranked, self.plan.search_space, self.mode,
                         self.provenance, self.search)

    def summary(self) -> str:
        """The choice in a line: its settings, its objective (with K sets: the mean, and how many sets alone would
        have chosen the same), and what the search cost."""
        times, stability = self.search["search_x_retrain"], self.search.get("stability")
        spent = "" if times is None else f"; the search cost {times:.2f}× retraining"
        sets = "" if stability is None else (
            f", the mean over {len(stability['same_choice'])} validation forget sets; "
            f"{sum(stability['same_choice'])} of {len(stability['same_choice'])} alone chose it too")
        return f"{self.chosen.candidate.label()} ({self.mode} objective {self.chosen.objective:.2f}{sets}{spent})"


def _quiet(text: str) -> None:
    pass


def _no_progress(description: str, total: int) -> ContextManager[None]:
    return contextlib.nullcontext()


def run_search(plan: SearchPlan, progress: Progress = _no_progress,
               note: Callable[[str], None] | None = None) -> TuneResult:
    """Read the files, score the original (or the oracle), screen the candidates under the cost cap and run them.
    `progress(description, total)` opens the progress of the candidates' runs and yields its on_step (or None);
    `note(text)` receives the search's notes (the cap, the candidates over it)."""
    cfg, note = plan.cfg, note or _quiet
    inputs = _Inputs.read(cfg, plan.sets)
    reference = retrain_work(inputs.parent, inputs.sizes.retain)
    cap = _cost_cap(cfg, reference, inputs.parent.source, plan.search_space, note)
    with WorkMeter() as depletion_meter:
        depleting = _estimate_depletion(cfg, inputs)
    scoring = _scoring(plan, inputs)
    with WorkMeter() as search_meter:  # every set's masks, runs, calibrations and scores
        trials, extended = _Candidates(plan, inputs, reference, cap, scoring).search(progress, note)
    ranked = rank_candidates(trials)

    def cost(trial: Trial) -> float:
        return math.inf if trial.cost is None else trial.cost

    chosen = cheapest_within_standard_error(ranked, cost)
    given = inputs.sets[0]
    provenance = {"model_sha256": inputs.parent.sha256, "forget_sha256": inputs.forget_set.sha256,
                  "oracle_sha256": inputs.oracle.sha256 if inputs.oracle is not None else None,
                  "reference_size": len(given.parts.reference), "validation_size": len(given.parts.validation),
                  "extended": extended}
    if len(inputs.sets) > 1:
        provenance["validation_sets"] = [one.record() for one in inputs.sets]
    spent = search_meter.work + depletion_meter.work
    search = {"max_cost": cap, "retrain_work": reference, "search_forward": spent.forward,
              "search_backward": spent.backward, "search_work": spent.units,
              "search_x_retrain": None if reference is None else spent.units / reference}
    if depleting:  # its share of the search's work
        search["depletion_work"] = depletion_meter.work.units
        search["depletion_x_retrain"] = None if reference is None else depletion_meter.work.units / reference
    stability = None if chosen is None else selection_stability(ranked, chosen, cost)
    if stability is not None:
        search["stability"] = stability
    return TuneResult(plan, ranked, chosen, scoring.mode, provenance, search)


def _plain(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def best_yaml(cfg: TuneConfig, chosen: Trial, ranked: list[Trial], grid: dict, mode: str, provenance: dict,
              search: dict) -> bytes:
    """The chosen settings as `localize:` and `apply:` sections (apply's with the cost cap, and the calibration step
    with the seed whose examples it fits on when the choice calibrates), and the search in a `tune:` section: its
    objective, every candidate's predicted cost (and objective on each validation forget set), and the search's own
    work (and the choice's stability)."""
    localize_values, method_values = _split_settings(chosen.candidate.settings)
    document = {}
    if cfg.strategy is not None:
        document["localize"] = {"strategy": cfg.strategy,
                                **({"budget": cfg.budget} if cfg.budget is not None else {}), **localize_values}
    document["apply"] = {"method": cfg.method, **cfg.params, **method_values,
                         **({"max_cost": cfg.max_cost} if search["max_cost"] is not None else {}),
                         **({"calibrate": True, "tune_seed": cfg.seed}
                            if _calibrates(cfg, chosen.candidate.settings) else {})}

    def candidate(trial: Trial) -> dict:
        record = {"settings": trial.candidate.settings, "ran": trial.fraction, "cost": _plain(trial.cost),
                  "objective": _plain(trial.objective), "failure": trial.failure}
        if trial is chosen:
            record["chosen"] = True
        if trial.set_scores:
            record["objectives"] = [_plain(value) for value in set_objectives(trial)]
        return {**record, **{key: _plain(trial.score[key]) for key in SCALES if key in trial.score}}

    document["tune"] = {
        "objective": mode, "value": _plain(chosen.objective),
        "parts": {key: _plain(value) for key, value in chosen.score.items() if key != "objective"},
        "search_space": grid,
        "fixed": {"strategy": cfg.strategy, "budget": cfg.budget, **cfg.params,
                  **({"calibrate": True} if cfg.calibrate else {})},
        "weights": dataclasses.asdict(objective_weights(cfg)) if mode == "oracle-free" else None,
        "seed": cfg.seed, **provenance, **search,
        "candidates": [candidate(trial) for trial in ranked],
    }
    header = f"# unlearn tune: the best of {len(ranked)} candidates ({mode} objective {chosen.objective:.3f})\n"
    return (header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None)).encode()
