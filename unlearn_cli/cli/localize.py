"""`unlearn localize`: find the parameters that matter for a forget set and write them as a mask.

Usage:
    unlearn localize --model original.safetensors --forget forget.json --strategy del --budget 0.3 -o mask.safetensors
    unlearn localize --model original.safetensors --forget forget.json --strategy random --like mask.safetensors -o control.safetensors
    unlearn localize --model m.safetensors --forget f.json --strategy del --budget 0.3 -o - | unlearn apply --mask - …
    unlearn localize --seeds 0-31 -m 'pool/original-{seed}.safetensors' -f forget.json --strategy del --budget 0.3 -o 'pool/mask-{seed}.safetensors'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import (ConfigOption, DataRootOption, DeviceOption, QuietOption, SeedOption,
                                    handle_errors, progress_bar, stderr)
from unlearn_cli.cli.seeds import PoolModels, SeedRun, plan_seeds, run_seeds, seeds_option
from unlearn_cli.config import config_dict, resolve_config
from unlearn_cli.engine import select_device
from unlearn_cli.errors import UserError
from unlearn_cli.io.mask import mask_bytes, mask_counts, mask_metadata, read_mask
from unlearn_cli.streams import write_output
from unlearn_cli.localize import (NO_CRITERION, STRATEGIES, LocalizeSettings, list_criteria, list_granularities,
                                  list_strategies, resolve_settings)
from unlearn_cli.runs.localize import compute_mask, mask_steps


@dataclass
class LocalizeConfig:
    model: Optional[str] = None  # checkpoint to localize in (required: --model or model: in the YAML)
    forget: Optional[str] = None  # forget-set file (required: --forget or forget: in the YAML)
    strategy: str = "del"
    budget: Optional[float] = None  # fraction of all trainable scalars in (0, 1]; critmem: an optional cap
    criterion: Optional[str] = None  # None: the strategy's preset
    granularity: Optional[str] = None  # None: the strategy's preset
    topk: float = 0.1  # share of a neuron's scores averaged into its score
    like: Optional[str] = None  # mask file whose per-tensor counts `random` reproduces
    max_iterations: int = 100  # critmem: channels zeroed per example at most
    batch_size: int = 128  # forget-set batch size for the gradient
    seed: int = 0
    device: str = "auto"
    data_root: Optional[str] = None
    allow_mismatch: bool = False  # accept a forget set made for another dataset


def parse_budget(text: str | None) -> float | None:
    """`--budget` as given on the command line: a number, else a one-line error (not a usage error)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--budget {text!r}: not a number; give a fraction of the parameters in (0, 1], e.g. --budget 0.3") from None


SeedsOption = seeds_option("-m and --like may hold {seed} too (one file per seed; without it, one file for all seeds); "
                           "the dataset and --forget are read once, and every model must fit that data.",
                           "pool/mask-{seed}.safetensors",
                           "Under torchrun rank 0 computes every mask.")


def _strategy_help() -> str:
    return "; ".join(f"{name}: {STRATEGIES.get(name).summary}" for name in list_strategies())


@handle_errors
def localize(
    output: Annotated[str, typer.Option("--output", "-o", help="Mask to write (.safetensors; '-' for stdout).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint to localize in (.safetensors); required, here or as model: in --config.")] = None,
    forget: Annotated[Optional[str], typer.Option("--forget", "-f", help="Forget set (JSON from `unlearn split`, text or .npy indices); required, here or as forget: in --config.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(list_strategies())} (default: del)")] = None,
    budget: Annotated[Optional[str], typer.Option(help="Fraction of all parameters in (0, 1], e.g. 0.3 (critmem: optional cap)")] = None,
    criterion: Annotated[Optional[str], typer.Option(help=f"Override the strategy's criterion: {', '.join(list_criteria())}")] = None,
    granularity: Annotated[Optional[str], typer.Option(help=f"Override the strategy's granularity: {', '.join(list_granularities())}")] = None,
    topk: Annotated[Optional[float], typer.Option(help="Share of a neuron's top scores averaged into its score (default: 0.1)")] = None,
    like: Annotated[Optional[str], typer.Option(help="random: reproduce this mask's per-tensor unit counts")] = None,
    max_iterations: Annotated[Optional[int], typer.Option(help="critmem: channels zeroed per example at most (default: 100)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Forget-set batch size (default: 128)")] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Accept a forget set made for another dataset.")] = False,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Score parameters on the forget set and write the selected ones as a mask."""
    cfg = resolve_config(LocalizeConfig, config, {
        "model": model, "forget": forget, "strategy": strategy, "budget": parse_budget(budget), "criterion": criterion,
        "granularity": granularity, "topk": topk, "like": like, "max_iterations": max_iterations,
        "batch_size": batch_size, "seed": seed, "device": device, "data_root": data_root,
        "allow_mismatch": allow_mismatch or None}, section="localize")
    for flag, key, what in (("--model", "model", "CHECKPOINT"), ("--forget", "forget", "FORGET_SET")):
        if getattr(cfg, key) is None:
            raise UserError(f"{flag} is required: pass {flag} {what}, or set `{key}:` in {config or 'a --config YAML'}")
    settings = LocalizeSettings(strategy=cfg.strategy, budget=cfg.budget, criterion=cfg.criterion,
                                granularity=cfg.granularity, topk=cfg.topk, max_iterations=cfg.max_iterations,
                                seed=cfg.seed, like={} if cfg.like is not None else None)
    settings = resolve_settings(settings)  # bad options fail before any file is read
    cfg.criterion, cfg.granularity = settings.criterion, settings.granularity  # the resolved preset goes in the metadata
    runs = plan_seeds(seeds, seed, output, {"--model": cfg.model, "--forget": cfg.forget, "--like": cfg.like,
                                            "--config": config},
                      templated=("--model", "--like"), example="pool/mask-{seed}.safetensors")
    target = select_device(cfg.device)
    models = PoolModels(runs, cfg.data_root, cfg.forget, cfg.allow_mismatch)
    data, forget_set = models.data, models.forget_set

    def localize_one(run: SeedRun) -> None:
        checkpoint = models.model(run)
        run_cfg = dataclasses.replace(cfg, model=run.paths["--model"], like=run.paths["--like"],
                                      seed=cfg.seed if run.seed is None else run.seed)
        _localize(run_cfg, dataclasses.replace(settings, seed=run_cfg.seed), checkpoint, data, forget_set, target,
                  run.output, quiet, run.label(f"localize {settings.strategy}"))

    run_seeds(runs, localize_one)


def _localize(cfg: LocalizeConfig, settings: LocalizeSettings, checkpoint, data, forget_set, target, output: str,
              quiet: bool, description: str) -> None:
    """Compute one mask on `checkpoint` and write it."""
    like_sha256 = None
    if cfg.like is not None:
        like = read_mask(cfg.like, checkpoint.model)
        like_sha256, settings = like.sha256, dataclasses.replace(settings, like=like.mask)
    network = checkpoint.model.to(target)
    with progress_bar(description, mask_steps(settings, data, forget_set.indices), quiet) as on_step:
        mask, work = compute_mask(network, data, forget_set.indices, settings, arch=checkpoint.arch, device=target,
                                  batch_size=cfg.batch_size, on_step=on_step)
    meta = mask_metadata(
        strategy=settings.strategy, criterion=settings.criterion or NO_CRITERION, granularity=settings.granularity,
        budget=settings.budget, mask=mask, model_sha256=checkpoint.sha256, forget_sha256=forget_set.sha256,
        seed=cfg.seed, config=config_dict(cfg), topk=cfg.topk, like_sha256=like_sha256,
        work_forward=work.forward, work_backward=work.backward)
    write_output(output, mask_bytes(mask, meta))
    if not quiet:
        selected, count = mask_counts(mask)
        stderr.print(f"{settings.strategy} mask -> {output}: {selected:,} of {count:,} parameters "
                     f"({100 * selected / max(1, count):.2f}%; budget {cfg.budget if cfg.budget is not None else 'none'})")


localize.__doc__ = (f"Score parameters on the forget set and write the selected ones as a mask.\n\n"
                    f"Strategies — {_strategy_help()}.")
