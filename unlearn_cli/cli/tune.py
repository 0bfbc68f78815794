"""`unlearn tune`: choose a pipeline's settings from a grid, without an oracle by default, and write the choice as
a config YAML that `localize --config` and `apply --config` read.

Without --oracle each candidate is scored against held-out test examples with the forget set's class mix
(tune/objectives.py: the forget set should look as unseen as they do, without losing validation accuracy or
damaging the model). With --oracle it is scored by the average gap to the oracle, as the DEL paper tunes; then
--forget should be a validation forget set, not one whose results are reported.

Usage:
    unlearn tune --model original.safetensors --forget forget.json --strategy del --method rft \
        --grid lr=0.01,0.03,0.1 --grid epochs=5,10 --grid budget=0.1,0.3 -o best.yaml
    unlearn localize --model original.safetensors --forget forget.json --config best.yaml -o mask.safetensors
    unlearn apply --model original.safetensors --forget forget.json --mask mask.safetensors --config best.yaml -o del.safetensors
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Callable, Optional

import torch
import typer
import yaml
from rich.table import Table

from unlearn_cli.cli.common import (ConfigOption, DataRootOption, DeviceOption, QuietOption, SeedOption,
                                    handle_errors, progress_bar, stderr)
from unlearn_cli.config import parse_options, resolve_config
from unlearn_cli.cost import WorkMeter, reference_units
from unlearn_cli.engine import FastPath, predict, select_device
from unlearn_cli.errors import UserError, name_as
from unlearn_cli.evaluate.metrics import model_metrics, shadow_sets
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.streams import check_writable, write_output
from unlearn_cli.lineage import check_fits_data, check_oracle, data_as_trained, dataset_for
from unlearn_cli.localize import LocalizationData, LocalizeSettings, get_strategy, list_strategies, resolve_settings
from unlearn_cli.methods import (SetSizes, UnlearnData, fitted, get_method, list_methods, method_config,
                                 method_options, most_epochs_within)
from unlearn_cli.tune import (Candidate, OracleFreeWeights, Outputs, Trial, cap_share, cheapest_within_standard_error,
                              expand_grid, extend_edges, objective_standard_error, oracle_free_score, oracle_score,
                              parse_grid, planned_runs, rank_candidates, successive_halving, tuning_parts)

LOCALIZE_OPTIONS = ("budget", "topk", "criterion", "granularity", "max_iterations")  # grid keys that make the mask


@dataclass
class TuneConfig:
    model: Optional[str] = None  # checkpoint to unlearn from
    forget: Optional[str] = None  # forget set (with --oracle: a validation forget set)
    oracle: Optional[str] = None  # checkpoint retrained without the forget set: score by the average gap to it
    strategy: Optional[str] = None  # localization strategy; None: the method runs without a mask
    method: str = "rft"
    budget: Optional[float] = None  # the budget when it is not searched
    params: dict = field(default_factory=dict)  # method options that are not searched, e.g. {momentum: 0.9}
    allowance: float = 5.0  # points of reference accuracy a candidate may lose before it counts as damage
    weights: dict = field(default_factory=dict)  # oracle-free part -> weight (default 1 each)
    halving: bool = True  # stop hopeless candidates early (successive halving on epochs)
    extend: int = 2  # times a grid whose choice is at its edge is extended one step that way
    max_cost: float = 0.25  # F: a candidate whose predicted cost exceeds F × retraining is not run (1: no cap)
    seed: int = 0  # draws the reference and validation parts and the MIA shadow sets; seeds every candidate
    device: str = "auto"
    data_root: Optional[str] = None


def _split_settings(settings: dict) -> tuple[dict, dict]:
    """(localize options, method options) of a candidate's settings."""
    return ({key: value for key, value in settings.items() if key in LOCALIZE_OPTIONS},
            {key: value for key, value in settings.items() if key not in LOCALIZE_OPTIONS})


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
        key = tuple(sorted(localize_values.items()))
        if cfg.strategy is None:
            if localize_values:
                raise UserError(f"--grid {next(iter(localize_values))}: a localization option needs --strategy")
            masks[key] = None
        elif key not in masks:
            settings = LocalizeSettings(strategy=cfg.strategy, seed=cfg.seed,
                                        **{"budget": cfg.budget, **localize_values})
            masks[key] = resolve_settings(settings)
    return masks


def _outputs(model, data, forget_indices, parts, device, manipulated=None) -> Outputs:
    """Logits on F, R and V only: the reported part of the test set is never looked at. With `manipulated` (a
    manipulated F: (its manipulation, data whose test set is R manipulated the same way)), R is that, and R as
    it is goes to `damage` (and, for a poison, to the trigger's floor)."""
    forget = predict(model, data.batches("train", forget_indices, 512, device=device))
    reference = predict(model, data.batches("test", parts.reference, 512, device=device))
    validation = predict(model, data.batches("test", parts.validation, 512, device=device))
    if manipulated is None:
        return Outputs(*forget, *reference, *validation)
    manipulation, manipulated_reference = manipulated
    return Outputs(*forget, *predict(model, manipulated_reference.batches("test", batch_size=512, device=device)),
                   *validation, *reference,
                   trigger_target=manipulation.target if manipulation.kind == "poison" else None)


@dataclass
class _CostCap:
    """The cost cap a search runs under: which candidates fit it, and at what predicted cost ×retrain."""

    cfg: TuneConfig
    sizes: SetSizes
    reference: int | None  # retraining's work; None: the parent records no recipe, so there is no cap
    cap: float | None
    mask_for: Callable  # localization key -> (the mask or the UserError computing it raised, its work)

    def settle(self, candidate: Candidate) -> tuple[Candidate, float | None] | str:
        """(the candidate with an epochs share of the cap made a number, its predicted cost ×retrain), or why it
        is not run: over the cap."""
        cfg, sizes, reference, cap = self.cfg, self.sizes, self.reference, self.cap
        localize_values, method_values = _split_settings(candidate.settings)
        _, localize_units = self.mask_for(tuple(sorted(localize_values.items())))
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


def _cost_cap(cfg: TuneConfig, reference: int | None, source: str, search_space: dict, quiet: bool) -> float | None:
    """The cap a search runs under: --max-cost, or None when the parent records no recipe to measure cost against
    (an error when the grid asks for a share of the cap)."""
    epochs_values = search_space.get("epochs", [])
    if reference is None:
        if any(cap_share(value) is not None for value in epochs_values):
            raise UserError(f"--grid epochs=cap: {source} records no training epochs, so there is no retraining cost "
                            f"to take a share of; give epochs as numbers")
        if not quiet:
            stderr.print(f"note: {source} records no training epochs; candidates run without a cost cap")
        return None
    if cfg.max_cost > 1 and not quiet:
        stderr.print(f"note: --max-cost {cfg.max_cost:g} lets a candidate cost more than retraining, which is exact at 1")
    return cfg.max_cost


def _render(ranked: list[Trial], grid_keys: list[str], chosen: Trial | None) -> Table:
    parts = [key for key in (ranked[0].score if ranked and ranked[0].score else {}) if key != "objective"]
    for trial in ranked:
        parts += [key for key in trial.score if key != "objective" and key not in parts]
    table = Table(title="unlearn tune: every candidate, best first (objective and parts in points; lower is better)")
    for header in ["rank", *grid_keys, "share run", "cost ×retrain", "objective", *parts, "status"]:
        table.add_column(header, justify="left" if header in ("status", *grid_keys) else "right")
    for rank, trial in enumerate(ranked, 1):
        status = ("chosen" if trial is chosen else "failed: " + trial.failure if trial.failure
                  else "stopped early" if trial.fraction < 1 else "")
        numbers = [f"{trial.score[key]:.2f}" if key in trial.score and math.isfinite(trial.score[key]) else "—"
                   for key in parts]
        objective = "—" if not math.isfinite(trial.objective) else f"{trial.objective:.2f}"
        cost = "—" if trial.cost is None else f"{trial.cost:.3f}"
        table.add_row(str(rank), *[str(trial.candidate.settings[key]) for key in grid_keys],
                      "all" if trial.fraction == 1 else f"{trial.fraction:g}", cost, objective, *numbers, status)
    return table


def _plain(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def best_yaml(cfg: TuneConfig, chosen: Trial, ranked: list[Trial], grid: dict, mode: str, provenance: dict,
              search: dict) -> bytes:
    """The chosen settings as `localize:` and `apply:` sections (apply's with the cost cap), and the search in a
    `tune:` section: its objective, every candidate's predicted cost, and the search's own work."""
    localize_values, method_values = _split_settings(chosen.candidate.settings)
    document = {}
    if cfg.strategy is not None:
        document["localize"] = {"strategy": cfg.strategy,
                                **({"budget": cfg.budget} if cfg.budget is not None else {}), **localize_values}
    document["apply"] = {"method": cfg.method, **cfg.params, **method_values,
                         **({"max_cost": cfg.max_cost} if search["max_cost"] is not None else {})}
    document["tune"] = {
        "objective": mode, "value": _plain(chosen.objective),
        "parts": {key: _plain(value) for key, value in chosen.score.items() if key != "objective"},
        "search_space": grid, "fixed": {"strategy": cfg.strategy, "budget": cfg.budget, **cfg.params},
        "weights": dataclasses.asdict(_weights(cfg)) if mode == "oracle-free" else None,
        "seed": cfg.seed, **provenance, **search,
        "candidates": [{"settings": trial.candidate.settings, "ran": trial.fraction, "cost": _plain(trial.cost),
                        "objective": _plain(trial.objective), "failure": trial.failure} for trial in ranked],
    }
    header = f"# unlearn tune: the best of {len(ranked)} candidates ({mode} objective {chosen.objective:.3f})\n"
    return (header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None)).encode()


def _weights(cfg: TuneConfig) -> OracleFreeWeights:
    known = set(OracleFreeWeights.PARTS)
    unknown = sorted(set(cfg.weights) - known)
    if unknown:
        raise UserError(f"--weight {unknown[0]}: choose among {', '.join(OracleFreeWeights.PARTS)}")
    for key, value in cfg.weights.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise UserError(f"--weight {key}={value!r}: a weight is a number ≥ 0")
    return OracleFreeWeights(damage_allowance=cfg.allowance).replace({k: float(v) for k, v in cfg.weights.items()})


@handle_errors
def tune(
    output: Annotated[str, typer.Option("--output", "-o", help="YAML to write: localize:/apply: sections for --config ('-' for stdout).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint to unlearn from.")] = None,
    forget: Annotated[Optional[str], typer.Option("--forget", "-f", help="Forget set (with --oracle: a validation forget set).")] = None,
    strategy: Annotated[Optional[str], typer.Option(help=f"Localization strategy: {', '.join(list_strategies())}; none: no mask.")] = None,
    method: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(list_methods())} (default: rft)")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", help="option=v1,v2,… to search: a method option (lr, epochs, …) or a localization option (budget, topk, …).")] = None,
    budget: Annotated[Optional[float], typer.Option(help="The budget when it is not searched.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="key=value method option that is not searched.")] = None,
    oracle: Annotated[Optional[str], typer.Option("--oracle", help="Score by the average gap to this oracle (research mode).")] = None,
    allowance: Annotated[Optional[float], typer.Option(help="Points of reference accuracy a candidate may lose before it counts as damage (default: 5).")] = None,
    weight: Annotated[Optional[list[str]], typer.Option("--weight", help="part=weight of the oracle-free objective: forget_gap, distribution, validation_drop, damage, trigger (a poison only) (default 1 each).")] = None,
    halving: Annotated[Optional[bool], typer.Option("--halving/--no-halving", help="Stop hopeless candidates early: successive halving on epochs (default: on).")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="Run only candidates whose predicted cost is at most F × retraining on the retain set with the parent's recipe (default: 0.25; 1: no cap); --grid epochs=cap,cap/2 asks for the most epochs the cap allows, or a share.")] = None,
    extend: Annotated[Optional[int], typer.Option("--extend", help="When the choice is a grid's smallest or largest value, try one step further that way, at most this many times (default: 2; 0: never).")] = None,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Search a pipeline's settings and write the best as a YAML for `localize --config` and `apply --config`."""
    cfg = resolve_config(TuneConfig, config, {
        "model": model, "forget": forget, "oracle": oracle, "strategy": strategy, "method": method, "budget": budget,
        "params": parse_options(param, "--param"), "allowance": allowance, "weights": parse_options(weight, "--weight"),
        "halving": halving, "extend": extend, "max_cost": max_cost, "seed": seed, "device": device, "data_root": data_root}, section="tune")
    for flag, key in (("--model", "model"), ("--forget", "forget")):
        if getattr(cfg, key) is None:
            raise UserError(f"{flag} is required: pass {flag}, or set `{key}:` in the tune section of a --config YAML")
    weights = _weights(cfg)
    search_space = parse_grid(grid)
    name_as("param", method_options(cfg.method or "rft"))  # tune has no flag of a method's own: --param or --grid
    name_as("grid", search_space)
    unknown = [key for key in search_space if key not in LOCALIZE_OPTIONS and key not in method_options(cfg.method or "rft")]
    if unknown:
        raise UserError(f"--grid {unknown[0]}: method {cfg.method!r} has no such option, nor is it a localization "
                        f"option ({', '.join(LOCALIZE_OPTIONS)})")
    candidates = expand_grid(search_space)
    mask_settings = _check_candidates(cfg, candidates)
    check_writable(output, "--output", {"--model": cfg.model, "--forget": cfg.forget, "--oracle": cfg.oracle,
                                        "--config": config}, binary=False)
    target = select_device(cfg.device)
    parent = load_checkpoint(cfg.model)
    clean = dataset_for(parent, cfg.data_root)
    whole = read_forget_set(cfg.forget, num_train=clean.num_train, dataset=parent.dataset)
    data, forget_set = data_as_trained(clean, whole, [parent], unlearning=True)
    oracle_checkpoint = None
    if cfg.oracle is not None:
        oracle_checkpoint = load_checkpoint(cfg.oracle)
        check_fits_data(oracle_checkpoint, parent, data, "the oracle")
        check_oracle(oracle_checkpoint, whole, allow_mismatch=False)  # trained without every manipulated example
    parts = tuning_parts(data.test_labels, clean.train_labels[forget_set.indices], cfg.seed)  # F's true classes
    if oracle_checkpoint is None and len(parts.reference) == 0:
        raise UserError(f"{forget_set.source}: the test set holds no example of the forget set's classes, so there "
                        f"is no reference to score against; tune with --oracle instead")
    fast = FastPath.for_device(target, None, None, False)
    data.to(target, fast.memory_format)
    original_model = parent.model.to(target)
    sizes = SetSizes(len(forget_set.indices), data.num_train - len(forget_set.indices), data.num_train, parent.config)
    reference = reference_units(parent.provenance.method, parent.config, parent.cost, sizes.retain)
    cap = _cost_cap(cfg, reference, parent.source, search_space, quiet)

    if oracle_checkpoint is None:
        mode = "oracle-free"
        # unseen examples manipulated like F, when F is manipulated: what F looks like to a model that never saw it
        manipulation = forget_set.manipulation
        manipulated = None if manipulation is None else (manipulation,
                                                         manipulation.view_unseen(data, parts.reference, cfg.seed))
        original_outputs = _outputs(original_model, data, forget_set.indices, parts, target, manipulated)

        def score(model) -> dict:
            outputs = _outputs(model, data, forget_set.indices, parts, target, manipulated)
            return {**oracle_free_score(outputs, original_outputs, weights),
                    "objective_se": objective_standard_error(outputs, original_outputs, weights, seed=cfg.seed)}
    else:
        mode = "oracle"
        scored = data.test_subset(parts.tuning)  # as without an oracle, the reported half stays unseen
        members, nonmembers = shadow_sets(scored, forget_set.indices, cfg.seed)

        def metrics_of(model) -> dict:
            return model_metrics(model, scored, forget_set.indices, members, nonmembers, cfg.seed, device=target)

        oracle_metrics = metrics_of(oracle_checkpoint.model.to(target))

        def score(model) -> dict:
            return oracle_score(metrics_of(model), oracle_metrics)

    masks: dict[tuple, tuple] = {}

    def mask_for(key: tuple) -> tuple:
        """(the mask of these localization settings, or the UserError computing it raised; its work)."""
        if key not in masks:
            settings = mask_settings[key]
            if settings is None:
                masks[key] = (None, None)
            else:
                localization = LocalizationData(
                    forget_batches=lambda: data.batches("train", forget_set.indices, 128, device=target),
                    train_batches=lambda: data.batches("train", None, 128, device=target))
                with WorkMeter() as meter:
                    try:
                        mask = get_strategy(settings.strategy)(copy.deepcopy(original_model), localization,
                                                               dataclasses.replace(settings, arch=parent.arch))
                    except UserError as error:
                        mask = error
                masks[key] = (mask, meter.work.units)
        return masks[key]

    screen = _CostCap(cfg, sizes, reference, cap, mask_for)
    with WorkMeter() as search_meter:
        candidates, costs, over_cap = screen.screen(candidates)
        if not candidates:
            raise UserError(f"--max-cost {cap:g}: no candidate fits the cap ({'; '.join(over_cap[:3])}); raise "
                            f"--max-cost, or search fewer epochs")
        if over_cap and not quiet:
            stderr.print(f"--max-cost {cap:g}: not run, over the cap: {'; '.join(over_cap)}")

        def run(candidate: Candidate, fraction: float) -> Trial:
            started = time.perf_counter()
            localize_values, method_values = _split_settings(candidate.settings)
            method_cfg = method_config(cfg.method, _method_values(cfg, method_values))
            mask, _ = mask_for(tuple(sorted(localize_values.items())))
            if cap is not None:  # retrain: its recipe compressed to the cap
                method_cfg = fitted(cfg.method, method_cfg, sizes, None, reference, cap)[0]
            if fraction < 1 and hasattr(method_cfg, "epochs") and method_cfg.epochs:
                method_cfg = dataclasses.replace(method_cfg, epochs=max(1, math.ceil(method_cfg.epochs * fraction)))
            if isinstance(mask, UserError):
                return Trial(candidate, fraction, failure=str(mask), seconds=time.perf_counter() - started,
                             cost=costs.get(candidate.index))
            unlearn_data = UnlearnData.split(data, forget_set.indices, device=target, training_config=parent.config,
                                             fast=fast, new_model=parent.new_model)
            try:
                unlearned = get_method(cfg.method).run(copy.deepcopy(original_model), unlearn_data, mask, method_cfg)
                if not all(bool(torch.isfinite(p).all()) for p in unlearned.parameters()):
                    raise UserError("the weights became NaN or Inf")
                result = score(unlearned)
            except UserError as error:
                return Trial(candidate, fraction, failure=str(error), seconds=time.perf_counter() - started,
                             cost=costs.get(candidate.index))
            return Trial(candidate, fraction, score=result, seconds=time.perf_counter() - started,
                         cost=costs.get(candidate.index))

        # A quarter run of an 8-epoch candidate would compete with a quarter run of a 32-epoch one (8 epochs): when
        # epochs are searched, halving on them favours the longer candidates, so every candidate runs in full.
        halving_possible = cfg.halving and "epochs" in method_options(cfg.method) and "epochs" not in search_space
        rungs = (0.25, 0.5, 1.0) if halving_possible else (1.0,)
        with progress_bar(f"tune {cfg.method}", planned_runs(len(candidates), rungs), quiet) as on_step:
            done = {"runs": 0, "total": planned_runs(len(candidates), rungs)}

            def reported(candidate: Candidate, fraction: float) -> Trial:
                trial = run(candidate, fraction)
                done["runs"] += 1
                if on_step is not None:
                    on_step({"step": done["runs"], "total_steps": max(done["total"], done["runs"])})
                return trial

            def admit(candidate: Candidate) -> bool:
                try:
                    mask_settings.update(_check_candidates(cfg, [candidate]))
                except UserError:  # past the option's range: the edge is the limit
                    return False
                outcome = screen.settle(candidate)
                if isinstance(outcome, str):  # past the cost cap
                    return False
                costs[candidate.index] = outcome[1]
                return True

            trials = successive_halving(candidates, reported, rungs)
            extended = extend_edges(search_space, trials, reported, admit, cfg.extend)
    ranked = rank_candidates(trials)
    chosen = cheapest_within_standard_error(ranked, lambda trial: math.inf if trial.cost is None else trial.cost)
    if not quiet:
        stderr.print(_render(ranked, list(search_space), chosen))
    if chosen is None:
        raise UserError(f"every candidate failed ({ranked[0].failure}); try lower learning rates or larger budgets")
    provenance = {"model_sha256": parent.sha256, "forget_sha256": forget_set.sha256,
                  "oracle_sha256": oracle_checkpoint.sha256 if oracle_checkpoint is not None else None,
                  "reference_size": len(parts.reference), "validation_size": len(parts.validation)}
    spent = search_meter.work
    search = {"max_cost": cap, "retrain_work": reference, "search_forward": spent.forward,
              "search_backward": spent.backward, "search_work": spent.units,
              "search_x_retrain": None if reference is None else spent.units / reference}
    write_output(output, best_yaml(cfg, chosen, ranked, search_space, mode, {**provenance, "extended": extended},
                                   search), binary=False)
    if not quiet:
        spent = "" if search["search_x_retrain"] is None else f"; the search cost {search['search_x_retrain']:.2f}× retraining"
        stderr.print(f"chose {chosen.candidate.label()} ({mode} objective {chosen.objective:.2f}{spent}) -> {output}")
