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

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, progress_bar, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.cli.seeds import PoolModels, SeedRun, plan_seeds, run_seeds, seeds_option
from unlearn_cli.config import config_dict, data_root_option, device_option, option, resolve_config, threads_option
from unlearn_cli.errors import UserError
from unlearn_cli.streams import write_output
from unlearn_cli.localize.options import LocalizeOptions
from unlearn_cli.names import STRATEGIES

# The torch-using library code is imported in the functions that use it, so `localize --help` starts without torch.


@dataclass
class LocalizeConfig(LocalizeOptions):
    model: Optional[str] = option(None, "Checkpoint to localize in (.safetensors); required, here or as model: in "
                                        "--config.", "--model", "-m")
    forget: Optional[str] = option(None, "Forget set (JSON from `unlearn split`, text or .npy indices); required, "
                                         "here or as forget: in --config.", "--forget", "-f")
    like: Optional[str] = option(None, "random: reproduce this mask's per-tensor unit counts")  # a mask file
    batch_size: int = option(128, "Forget-set batch size")  # for the gradient
    allow_mismatch: bool = option(False, "Accept a forget set made for another dataset.", switch=True)
    data_root: Optional[str] = data_root_option()
    device: str = device_option()
    threads: Optional[int] = threads_option()


SeedsOption = seeds_option("-m and --like may hold {seed} too (one file per seed; without it, one file for all seeds); "
                           "the dataset and --forget are read once, and every model must fit that data.",
                           "pool/mask-{seed}.safetensors",
                           "Under torchrun rank 0 computes every mask.")


def _strategy_help() -> str:
    return "; ".join(f"{name}: {summary}" for name, summary in STRATEGIES.items())


@handle_errors
@with_options(LocalizeConfig)
def localize(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Mask to write (.safetensors; '-' for stdout).")],
    seeds: SeedsOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Score parameters on the forget set and write the selected ones as a mask."""
    from unlearn_cli.engine import select_device, use_threads
    from unlearn_cli.localize import LocalizeSettings, resolve_settings

    cfg = resolve_config(LocalizeConfig, config, given, section="localize")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    for flag, key, what in (("--model", "model", "CHECKPOINT"), ("--forget", "forget", "FORGET_SET")):
        if getattr(cfg, key) is None:
            raise UserError(f"{flag} is required: pass {flag} {what}, or set `{key}:` in {config or 'a --config YAML'}")
    settings = resolve_settings(LocalizeSettings.of(cfg, like={} if cfg.like is not None else None))  # bad options fail before any file is read
    cfg.criterion, cfg.granularity = settings.criterion, settings.granularity  # the resolved preset goes in the metadata
    runs = plan_seeds(seeds, given["seed"], output, {"--model": cfg.model, "--forget": cfg.forget, "--like": cfg.like,
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
    from unlearn_cli.io.mask import mask_bytes, mask_counts, mask_metadata, read_mask
    from unlearn_cli.localize import NO_CRITERION
    from unlearn_cli.runs.localize import compute_mask, mask_steps

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
