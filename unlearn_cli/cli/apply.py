"""`unlearn apply`: run an unlearning method on a checkpoint, optionally restricted to a mask.

Every parameter outside the mask stays bit-identical (the classifier head under `rft --train-head`
excepted). Method hyperparameters come from the method's config (see `--help` of each in the docs),
set by the common flags, `--param key=value`, or flat keys in the `--config` YAML.

Usage:
    unlearn apply --model original.safetensors --forget forget.json --method rft --mask mask.safetensors -o del.safetensors
    unlearn localize -m original.safetensors -f forget.json --strategy del --budget 0.3 -o - \
      | unlearn apply -m original.safetensors -f forget.json --method rft --mask - -o del.safetensors
    unlearn apply -m original.safetensors -f forget.json --method neggrad+ --param beta=0.95 --lr 0.01 -o out.safetensors
    unlearn apply --seeds 0-31 -m 'pool/original-{seed}.safetensors' -f forget.json --mask 'pool/mask-{seed}.safetensors' -o 'pool/unlearned-{seed}.safetensors'
    torchrun --nproc-per-node 4 -m unlearn_cli apply -m original.safetensors -f forget.json --mask mask.safetensors -o del.safetensors
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, progress_bar, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.cli.seeds import (DEALT_OUT, SEED, PoolModels, SeedRun, check_pool_flag, dealt_out, plan_seeds,
                                   run_seeds, seeds_option, stack_pool)
from unlearn_cli.config import (amp_option, channels_last_option, compile_option, config_dict, data_root_option,
                                device_option, load_yaml_config, option, parse_options, resolve_config, stacked_option,
                                threads_option)
from unlearn_cli.errors import UserError, name_as
from unlearn_cli.method_configs import METHOD_CONFIGS, RFTConfig, UpdateConfig
from unlearn_cli.names import METHODS
from unlearn_cli.streams import write_output

# The torch-using library code is imported in the functions that use it, so `apply --help` starts without torch.


@dataclass
class ApplyConfig:
    model: Optional[str] = option(None, "Checkpoint to unlearn from.", "--model", "-m")
    forget: Optional[str] = option(None, "Forget set (JSON from `unlearn split`, text or .npy indices).", "--forget", "-f")
    method: str = option("rft", f"One of: {', '.join(METHODS)}; see below")
    mask: Optional[str] = option(None, "Mask from `unlearn localize` ('-' for stdin); only masked parameters change.")
    allow_other_model: bool = option(False, "Accept a mask computed on another checkpoint (recorded in the output).",
                                     switch=True)
    allow_mismatch: bool = option(False, "Accept a forget set made for another dataset, or a mask computed for "
                                         "another forget set (recorded in the output).", switch=True)
    device: str = device_option()
    threads: Optional[int] = threads_option()
    data_root: Optional[str] = data_root_option()
    amp: Optional[bool] = amp_option()  # None: on for cuda, off otherwise (the resolved value is stored)
    channels_last: Optional[bool] = channels_last_option()
    compile: bool = compile_option()
    stacked: Optional[bool] = stacked_option("unlearn the models at once (methods whose loss is the plain "
                                             "cross-entropy: finetune, rft, random-label)")
    calibrate: bool = option(False, "End with a confidence scale on the logits, fitted without an oracle to the "
                                    "parent's confidence on unseen test examples of the classes the forget set leaves, "
                                    "and folded into the classifier head (no prediction changes)")
    tune_seed: int = option(0, "The --seed of `unlearn tune` whose validation part --calibrate fits on (evaluate "
                               "--test-part reported --tune-seed leaves it out)", "--tune-seed")
    max_cost: Optional[float] = option(None, "Cost at most F × retraining on the retain set with the parent's recipe "
                                             "(mask's localization included); with --method retrain, run that recipe "
                                             "compressed to F (retrain @ F).", "--max-cost")


APPLY_OPTIONS = [field.name for field in dataclasses.fields(ApplyConfig)]
METHOD_FLAGS = (UpdateConfig, RFTConfig)  # the method options with a flag of their own; the others are --param
RECOVERY_TOLERANCE = 5.0  # points of retain accuracy below the parent's before `apply` warns
COST_WARNING = 0.5  # cost ×retrain above which `apply` warns that retraining would be exact for about that
SeedsOption = seeds_option("-m and --mask may hold {seed} too (one model and mask per seed; without it, one file "
                           "for all seeds); the dataset and --forget are read once, and every model must fit that data.",
                           "pool/unlearned-{seed}.safetensors",
                           DEALT_OUT)


def resolve(config_path: str | None, given: dict, param: list[str] | None) -> tuple[ApplyConfig, object]:
    """The apply options and the method's hyperparameters from the flags `given`, the `--param` values and the YAML
    file: flags override the file, a method's own flag its --param."""
    from unlearn_cli.methods import get_method, method_config, method_options

    flags = {key: value for key, value in given.items() if key not in APPLY_OPTIONS}
    params = parse_options(param, "--param") or {}
    name_as("param", [key for key in params if flags.get(key) is None])  # a flag given beside overrides the --param
    method_flags = {**params, **{key: value for key, value in flags.items() if value is not None}}
    document = {str(key).replace("-", "_"): value for key, value in load_yaml_config(config_path, "apply").items()}
    cfg = resolve_config(ApplyConfig, config_path, {key: value for key, value in given.items() if key in APPLY_OPTIONS},
                         document={key: value for key, value in document.items() if key in APPLY_OPTIONS})
    get_method(cfg.method)  # an unknown method is reported before its options
    from_file = {key: value for key, value in document.items() if key not in APPLY_OPTIONS}
    method_cfg = method_config(cfg.method, method_flags, config_path, from_file)
    name_as("param", [key for key in method_options(cfg.method) if key not in flags])  # no flag of their own
    return cfg, method_cfg


def _methods_text() -> str:
    """One paragraph per method for --help: what it does and its own --param options."""
    common = {field.name for field in dataclasses.fields(RFTConfig)}  # every loop's options, and rft's train_head
    lines = []
    for name, summary in METHODS.items():
        own = [field.name for field in dataclasses.fields(METHOD_CONFIGS[name]) if field.name not in common]
        lines.append(f"{name}: {summary}" + (f" (--param {', '.join(own)})" if own else ""))
    return "\n\n".join(lines)


@handle_errors
@with_options(ApplyConfig, *METHOD_FLAGS)
def apply(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Unlearned checkpoint to write (.safetensors).")],
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="key=value method hyperparameter, e.g. beta=0.95")] = None,
    seeds: SeedsOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Unlearn the forget set from a checkpoint with one method, changing only the masked parameters.

    Under torchrun the method's training loop is data-parallel over the retain set (--batch-size is the
    global batch) and rank 0 writes the output.
    """
    from unlearn_cli.distributed import data_parallel, deal, is_main_process, on_own
    from unlearn_cli.engine import select_device, use_threads
    from unlearn_cli.methods import get_method

    cfg, method_cfg = resolve(config, given, param)
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    if cfg.model is None or cfg.forget is None:
        raise UserError("apply needs --model CHECKPOINT and --forget FORGET_SET (or model:/forget: in --config)")
    check_pool_flag(cfg.stacked, seeds, "unlearns")
    main, pooled = is_main_process(), dealt_out(seeds)  # pooled: every process runs and writes its own seeds
    quiet = quiet or not (main or pooled)
    runs = plan_seeds(seeds, given["seed"], output, {"--model": cfg.model, "--forget": cfg.forget, "--mask": cfg.mask,
                                            "--config": config},
                      templated=("--model", "--mask"), example="pool/unlearned-{seed}.safetensors", check_outputs=main or pooled)
    if (len(runs) > 1 and cfg.mask is not None and SEED not in cfg.mask and SEED in cfg.model
            and not cfg.allow_other_model):
        raise UserError(f"--mask {cfg.mask} is shared by every seed, but --model differs per seed and a mask holds "
                        f"the model it was computed on: put {SEED} in --mask too, e.g. --mask "
                        f"'pool/mask-{SEED}.safetensors', or pass --allow-other-model if that is deliberate")
    runs = deal(runs) if pooled else runs
    if not runs:  # more processes than seeds: this one has none
        return
    with (on_own if pooled else data_parallel)(select_device(cfg.device)) as (target, shard):
        models = PoolModels(runs, cfg.data_root, cfg.forget, cfg.allow_mismatch)
        dataset, forget_set = models.data, models.forget_set
        unlearning = get_method(cfg.method)
        cfg.stacked = stack_pool(cfg.stacked, seeds, len(runs), models.architecture(), target,
                                 f"{cfg.method} unlearns", quiet,
                                 None if unlearning.stacks else f"its loss is not the plain cross-entropy that a "
                                                                f"stacked loop computes")
        if cfg.stacked:
            _apply_stacked(cfg, method_cfg, runs, models, target, shard, quiet)
            return

        def apply_one(run: SeedRun) -> None:
            parent = models.model(run)
            run_cfg = dataclasses.replace(cfg, model=run.paths["--model"], mask=run.paths["--mask"])
            run_method_cfg = method_cfg if run.seed is None else dataclasses.replace(method_cfg, seed=run.seed)
            # a copy of the dataset per seed: moving it to the device leaves the one read untouched
            _apply(run_cfg, run_method_cfg, run.output, target, shard, quiet, parent, dataclasses.replace(dataset),
                   forget_set, run.label(cfg.method))

        run_seeds(runs, apply_one)


def _apply(cfg: ApplyConfig, method_cfg, output: str, target: torch.device, shard, quiet: bool, parent,
           dataset: ImageData, forget_set, description: str) -> None:
    """Unlearn `parent` on this process's device and shard; rank 0 writes the checkpoint and reports."""
    from unlearn_cli.cost import WorkMeter
    from unlearn_cli.distributed import confirm_replicas
    from unlearn_cli.runs.unlearn import unlearn, unlearn_data

    mask_file = _read_mask(cfg, parent, forget_set, quiet)
    fast = _fast_path(cfg, target)
    dataset.to(target, fast.memory_format)
    data = unlearn_data(dataset, forget_set.indices, parent, target, fast, shard)
    with WorkMeter() as meter:
        calibration = _calibration(cfg, parent, data)
        method_cfg = _within_cap(cfg, method_cfg, parent, data, mask_file, calibration, quiet)
        parent_retain = _retain_accuracy(parent.model.to(target), data) if shard.is_main else None
        started = time.perf_counter()
        with progress_bar(description, None, quiet) as on_step:
            unlearned = unlearn(cfg.method, parent.model, data, _selection(mask_file), method_cfg, on_step)
        wall_time = time.perf_counter() - started
        confirm_replicas(unlearned)  # every rank got here with the same weights, or nothing is written
        scale = None if calibration is None else calibration.apply(unlearned, data.dataset, data.device)
        retain = _retain_accuracy(unlearned, data) if shard.is_main else None
    # every rank ran the method on its shard of each batch: the run's work is the ranks' together
    _finish(cfg, method_cfg, output, parent, forget_set, mask_file, unlearned, data, wall_time,
            (parent_retain, retain), meter.work.scaled(shard.world), quiet, scale)


def _apply_stacked(cfg: ApplyConfig, method_cfg, runs: list[SeedRun], models: PoolModels, target: torch.device,
                   shard, quiet: bool) -> None:
    """Every run's model unlearned at once (`unlearn_cli.stacked`): each prepared by the method (rft's reset) and
    given its own loop (its seed's batches and relabelling, its mask), then all loops run stacked; each seed's
    file as its own run would write it but for `stacked: true` in the config and the wall time (the pool's,
    shared out evenly)."""
    from unlearn_cli.cost import WorkMeter
    from unlearn_cli.methods import get_method
    from unlearn_cli.runs.unlearn import unlearn_data
    from unlearn_cli.stacked import run_stacked

    unlearning = get_method(cfg.method)
    fast = _fast_path(cfg, target)
    dataset = dataclasses.replace(models.data).to(target, fast.memory_format)  # the one read stays where it is
    pool = []
    with WorkMeter() as meter:
        for run in runs:
            parent = models.model(run)
            run_cfg = dataclasses.replace(cfg, model=run.paths["--model"], mask=run.paths["--mask"])
            mask_file = _read_mask(run_cfg, parent, models.forget_set, quiet)
            data = unlearn_data(dataset, models.forget_set.indices, parent, target, fast, shard)
            calibration = _calibration(cfg, parent, data)  # before the loop's preparation changes the model
            method_run_cfg = _within_cap(run_cfg, dataclasses.replace(method_cfg, seed=run.seed), parent, data,
                                         mask_file, calibration, quiet)
            parent_retain = _retain_accuracy(parent.model.to(target), data)
            loop = unlearning.loop(parent.model, data, _selection(mask_file), method_run_cfg)
            pool.append(_PoolRun(run, run_cfg, method_run_cfg, parent, mask_file, data, parent_retain, loop,
                                 calibration))
        first = pool[0].loop
        if any(member.loop.shared_part != first.shared_part for member in pool):
            raise ValueError(f"{cfg.method}: the pool's loops differ in more than their batches and masks")
        started = time.perf_counter()
        with progress_bar(f"{cfg.method} ×{len(pool)} (stacked)", first.steps_per_epoch * first.settings.epochs,
                          quiet) as on_step:
            run_stacked([member.parent.model for member in pool],
                        lambda epoch: [member.loop.batches_for_epoch(epoch) for member in pool], first.settings,
                        first.steps_per_epoch, target, masks=[_selection(member.mask_file) for member in pool],
                        always_trainable=first.always_trainable, freeze_bn=first.freeze_bn,
                        model_names=[f"--mask of seed {member.run.seed}" for member in pool], on_step=on_step,
                        fast=fast)
        wall_time = (time.perf_counter() - started) / len(pool)
        scales = [None if member.calibration is None else member.calibration.apply(member.parent.model, dataset, target)
                  for member in pool]
        retains = [_retain_accuracy(member.parent.model, member.data) for member in pool]
    work = meter.work.shared(len(pool))  # every model ran the same loop on as many examples
    finished = {member.run.seed: (member, retain, scale) for member, retain, scale in zip(pool, retains, scales)}

    def write_one(run: SeedRun) -> None:  # one file per seed; an interruption says which are written
        member, retain, scale = finished[run.seed]
        _finish(member.cfg, member.method_cfg, member.run.output, member.parent, models.forget_set, member.mask_file,
                member.parent.model, member.data, wall_time, (member.parent_retain, retain), work, quiet, scale)

    run_seeds(runs, write_one)


@dataclass
class _PoolRun:
    """One seed of a stacked `apply`: its run, configs, parent, mask, data, the parent's retain accuracy, loop and
    planned calibration."""

    run: SeedRun
    cfg: ApplyConfig
    method_cfg: object
    parent: object
    mask_file: object
    data: UnlearnData
    parent_retain: float
    loop: MethodLoop
    calibration: Calibration | None


def _selection(mask_file):
    return None if mask_file is None else mask_file.mask


def _fast_path(cfg: ApplyConfig, target: torch.device) -> FastPath:
    from unlearn_cli.engine import FastPath

    fast = FastPath.for_device(target, cfg.amp, cfg.channels_last, cfg.compile)
    cfg.amp, cfg.channels_last, cfg.compile = dataclasses.astuple(fast)  # the resolved flags go in the metadata
    return fast


def _read_mask(cfg: ApplyConfig, parent, forget_set, quiet: bool):
    """The mask file of --mask, checked against the model and the forget set; None without --mask."""
    from unlearn_cli.io.mask import read_mask
    from unlearn_cli.lineage import check_mask
    from unlearn_cli.methods import get_method

    if cfg.mask is None:
        return None
    mask_file = read_mask(cfg.mask, parent.model)
    check_mask(mask_file, parent.sha256, forget_set.sha256, allow_other_model=cfg.allow_other_model,
               allow_other_forget_set=cfg.allow_mismatch)
    if not get_method(cfg.method).uses_mask and not quiet:
        stderr.print(f"note: method {cfg.method} ignores the mask; every parameter may change")
    return mask_file


def _retain_accuracy(model, data: UnlearnData) -> float:
    """The recovery check: accuracy on an evenly spaced sample of the retain set (counted in the run's work)."""
    from unlearn_cli.engine import accuracy
    from unlearn_cli.methods import recovery_sample

    return accuracy(model, data.dataset.batches("train", recovery_sample(data.retain), batch_size=512,
                                                device=data.device))


def _calibration(cfg: ApplyConfig, parent, data: UnlearnData) -> Calibration | None:
    """With --calibrate, the calibration's examples and the parent's confidence on them, taken before the method
    runs; None without."""
    from unlearn_cli.runs.calibrate import Calibration

    if not cfg.calibrate or not data.shard.is_main:  # as the recovery check: rank 0 alone, which writes the file
        return None
    return Calibration.before(parent.model.to(data.device), data.dataset, data.forget, cfg.tune_seed, data.device)


def _within_cap(cfg: ApplyConfig, method_cfg, parent, data: UnlearnData, mask_file, calibration: Calibration | None,
                quiet: bool):
    """method_cfg fitted to --max-cost (retrain: its recipe compressed to the cap); any other method is refused when
    its predicted work (its own, the mask's localization, the recovery check and a calibration) would exceed the
    cap."""
    from unlearn_cli.methods import SetSizes, fit_to_cap
    from unlearn_cli.runs.unlearn import retrain_work

    if cfg.max_cost is None:
        return method_cfg
    reference = retrain_work(parent, len(data.retain))
    if reference is None:
        raise UserError(f"--max-cost: {parent.source} records no training epochs, so there is no retraining cost to "
                        f"cap against; retrain the original with `unlearn train`, or drop --max-cost")
    if cfg.max_cost > 1 and not quiet:
        stderr.print(f"note: --max-cost {cfg.max_cost:g} lets the run cost more than retraining, which is exact at 1")
    try:
        sizes = dataclasses.replace(SetSizes.of(data), calibration=0 if calibration is None else len(calibration.examples))
        return fit_to_cap(cfg.method, method_cfg, sizes,
                          mask_file.record.localize_units if mask_file is not None else None, reference, cfg.max_cost)[0]
    except UserError as error:
        raise UserError(f"--max-cost {cfg.max_cost:g}: {error}") from None


def _finish(cfg: ApplyConfig, method_cfg, output: str, parent, forget_set, mask_file, unlearned, data: UnlearnData,
            wall_time: float, retain_before_after: tuple, work: Work, quiet: bool, scale: float | None) -> None:
    """Rank 0 writes the unlearned checkpoint with its provenance (the calibration's `scale`, if any) and cost, warns
    when the retain accuracy did not recover or the run cost more than half a retrain, and reports."""
    from unlearn_cli.cost import RecordedCost
    from unlearn_cli.engine import accuracy
    from unlearn_cli.io.checkpoint import Provenance, checkpoint_bytes, checkpoint_metadata
    from unlearn_cli.io.mask import mask_counts
    from unlearn_cli.lineage import mask_overrides
    from unlearn_cli.methods import get_method
    from unlearn_cli.runs.unlearn import retrain_work

    unlearning = get_method(cfg.method)
    unlearned = unlearned.cpu()
    provenance = Provenance(seed=method_cfg.seed, method=cfg.method, parent_sha256=parent.sha256,
                            forget_sha256=forget_set.sha256,
                            excluded_sha256=forget_set.sha256 if unlearning.excludes_forget_set else None,
                            manipulated_sha256=parent.provenance.manipulated_sha256, calibration_scale=scale)
    if mask_file is not None:
        recorded = mask_file.record
        provenance = dataclasses.replace(
            provenance, mask_sha256=mask_file.sha256, mask_strategy=recorded.strategy or None,
            mask_budget=recorded.budget, mask_selected_fraction=recorded.selected_fraction,
            **mask_overrides(recorded, parent.sha256, forget_set.sha256))
    extra = {}
    data_root_used = cfg.data_root or parent.data_root
    if data_root_used:
        extra["data_root"] = data_root_used
    if data.shard.world > 1:
        extra["world_size"] = str(data.shard.world)
    cost = RecordedCost(work, mask_file.record.localize_units if mask_file is not None else None,
                        retrain_work(parent, len(data.retain)))
    meta = checkpoint_metadata(
        arch=parent.arch, arch_kwargs=parent.arch_kwargs, num_classes=parent.num_classes, dataset=parent.dataset,
        dataset_kwargs=parent.dataset_kwargs, input_shape=parent.input_shape,
        config={**config_dict(cfg), **config_dict(method_cfg)}, wall_time_s=wall_time, provenance=provenance,
        cost=cost, **extra)
    if not data.shard.is_main:  # a rank other than 0 (which is always quiet) writes and reports nothing
        return
    write_output(output, checkpoint_bytes(unlearned, meta))
    parent_retain, retain = retain_before_after
    if parent_retain - retain > RECOVERY_TOLERANCE:
        stderr.print(f"[yellow]warning: retain accuracy fell from {parent_retain:.1f}% to {retain:.1f}%: the "
                     f"finetune did not recover the model: try `unlearn tune` or raise --epochs / --lr[/yellow]")
    times_retrain = cost.times_retrain()
    if times_retrain is not None and times_retrain > COST_WARNING and cfg.method != "retrain":
        stderr.print(f"[yellow]warning: {cfg.method} cost {times_retrain:.2f}× retraining; `--method retrain` is exact "
                     f"for 1×, about {1 / times_retrain:.1f}× this[/yellow]")
    if not quiet:
        model, device = unlearned.to(data.device), data.device
        forget_accuracy = accuracy(model, data.dataset.batches("train", forget_set.indices, batch_size=512, device=device))
        test_accuracy = accuracy(model, data.dataset.batches("test", batch_size=512, device=device))
        scope = "no mask" if mask_file is None else "mask {}/{} parameters".format(*mask_counts(mask_file.mask))
        scope += "" if scale is None else f", calibrated ×{scale:.3f}"
        spent = "cost unknown" if times_retrain is None else f"{times_retrain:.3f}× retraining"
        stderr.print(f"{cfg.method} ({scope}) -> {output}: forget accuracy {forget_accuracy:.1f}%, "
                     f"test accuracy {test_accuracy:.1f}% ({spent}, {wall_time:.1f} s)")
    unlearned.cpu()

apply.__doc__ = f"{apply.__doc__}\n\nMethods:\n\n{_methods_text()}"
