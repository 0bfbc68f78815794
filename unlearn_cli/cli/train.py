"""`unlearn train`: train an original model, or the oracle with `--exclude FORGET` (paper recipe defaults).

Usage:
    unlearn train --dataset digits --arch mlp --epochs 30 -o original.safetensors
    unlearn train --dataset digits --arch mlp --exclude forget.json -o oracle.safetensors
    unlearn train --dataset digits --arch mlp --manipulate poison.json -o poisoned.safetensors
    unlearn train --dataset digits --arch mlp --seeds 0-31 -o 'pool/original-{seed}.safetensors'
    torchrun --nproc-per-node 4 -m unlearn_cli train --dataset cifar10 --arch resnet18 -o original.safetensors
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, progress_bar, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.cli.seeds import (DEALT_OUT, SeedRun, check_pool_flag, dealt_out, plan_seeds, run_seeds, seeds_option,
                                   stack_pool)
from unlearn_cli.config import (amp_option, channels_last_option, compile_option, config_dict, device_option, option,
                                resolve_config, seed_option, stacked_option, threads_option)
from unlearn_cli.data.choice import DatasetChoice
from unlearn_cli.errors import UserError
from unlearn_cli.names import MODELS
from unlearn_cli.streams import write_output

# The torch-using library code is imported in the functions that use it, so `train --help` starts without torch.


@dataclass
class TrainConfig(DatasetChoice):
    arch: str = option("mlp", f"One of: {', '.join(MODELS)}")
    arch_options: dict = option(dict, "key=value model option, e.g. width=256", "--arch-option")
    exclude: Optional[str] = option(None, "Forget set to leave out: trains the oracle.")
    manipulate: Optional[str] = option(None, "Forget set with a manipulation (split --kind mislabel|poison): train on "
                                             "the training set with its labels / patches applied.")
    epochs: int = option(30, "Epochs")
    lr: Optional[float] = option(None, "Learning rate", default_text="0.1; vit 0.05")  # as in the paper
    batch_size: int = option(128, "Batch size")  # global: under torchrun each of the N processes takes batch_size / N
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_steps: Optional[int] = option(None, "Stop after this many steps.")  # smoke runs
    seed: int = seed_option()
    device: str = device_option()
    threads: Optional[int] = threads_option()
    amp: Optional[bool] = amp_option()  # None: on for cuda, off otherwise (the resolved value is stored)
    channels_last: Optional[bool] = channels_last_option()
    compile: bool = compile_option()
    stacked: Optional[bool] = stacked_option("train the models at once")
    record_memorization: bool = option(True, "Record each training example's mean confidence over training in the "
                                             "checkpoint: the memorization proxy of `split --kind memorization` and "
                                             "`audit --memorization` (4 bytes per example)")


def default_lr(arch: str) -> float:
    return 0.05 if arch == "vit" else 0.1


SeedsOption = seeds_option("The dataset (and --exclude) is read once for all seeds.",
                           "pool/original-{seed}.safetensors",
                           DEALT_OUT)


@handle_errors
@with_options(TrainConfig)
def train(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Checkpoint to write (.safetensors).")],
    seeds: SeedsOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Train a classifier with SGD (momentum 0.9, cosine schedule) and write a self-describing checkpoint.

    Under torchrun the training is data-parallel (--batch-size is the global batch) and rank 0 writes the output.
    """
    import torch

    from unlearn_cli.distributed import data_parallel, deal, is_main_process, on_own
    from unlearn_cli.engine import FastPath, accuracy, select_device, use_threads
    from unlearn_cli.models import create_model

    cfg = resolve_config(TrainConfig, config, given, section="train")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    if cfg.lr is None:
        cfg.lr = default_lr(cfg.arch)
    check_pool_flag(cfg.stacked, seeds, "trains")
    main, pooled = is_main_process(), dealt_out(seeds)  # pooled: every process runs and writes its own seeds
    quiet = quiet or not (main or pooled)
    runs = plan_seeds(seeds, given["seed"], output, {"--exclude": cfg.exclude, "--manipulate": cfg.manipulate,
                                            "--config": config},
                      example=f"pool/{'oracle' if cfg.exclude is not None else 'original'}-{{seed}}.safetensors",
                      check_outputs=main or pooled)
    runs = deal(runs) if pooled else runs
    if not runs:  # more processes than seeds: this one has none
        return
    with (on_own if pooled else data_parallel)(select_device(cfg.device)) as (target, shard):
        fast = FastPath.for_device(target, cfg.amp, cfg.channels_last, cfg.compile)
        cfg.amp, cfg.channels_last, cfg.compile = dataclasses.astuple(fast)  # the resolved flags go in the metadata
        data = cfg.build()
        data, indices, provenance = _training_data(cfg, data)
        cfg.stacked = stack_pool(cfg.stacked, seeds, len(runs), create_model(cfg.arch, data.num_classes, data.input_shape,
                                                                             **cfg.arch_options),
                                 target, f"{cfg.arch} is trained", quiet)

        def report(run: SeedRun, model, used: ImageData, wall_time: float) -> None:
            if not quiet:
                test = accuracy(model, used.to(torch.device("cpu")).batches("test", batch_size=512))
                stderr.print(f"{'oracle' if indices is not None else 'model'} -> {run.output}: test accuracy "
                             f"{test:.1f}% ({wall_time:.1f} s)")

        if cfg.stacked:
            _train_stacked(cfg, runs, target, quiet, fast, dataclasses.replace(data), indices, provenance, report)
            return

        def train_one(run: SeedRun) -> None:
            run_cfg = cfg if run.seed is None else dataclasses.replace(cfg, seed=run.seed)
            # a copy per seed: moving it to the device, or back for the report, leaves `data` as it was read
            model, used, wall_time = _train(run_cfg, run.output, target, shard, quiet, fast, dataclasses.replace(data),
                                            indices, dataclasses.replace(provenance, seed=run_cfg.seed),
                                            run.label(f"train {cfg.arch}"))
            report(run, model, used, wall_time)

        run_seeds(runs, train_one)


def _training_data(cfg: TrainConfig, data: ImageData) -> tuple[ImageData, torch.Tensor | None, "Provenance"]:
    """(the data with --manipulate's manipulation applied, the examples trained on (None: all), the provenance of
    both); --exclude and --manipulate of the same forget set is a UserError."""
    from unlearn_cli.io.checkpoint import Provenance

    data, manipulated, manipulated_forget = _manipulated(cfg, data)
    indices, excluded = _retain_set(cfg, data)
    if excluded is not None and excluded == manipulated_forget:
        raise UserError(f"--exclude {cfg.exclude} and --manipulate {cfg.manipulate} name the same forget set: its "
                        f"examples would be manipulated, then left out; train the oracle with --exclude alone, "
                        f"the manipulated original with --manipulate alone")
    return data, indices, Provenance(excluded_sha256=excluded, manipulated_sha256=manipulated)


def _manipulated(cfg: TrainConfig, data: ImageData) -> tuple[ImageData, str | None, str | None]:
    """(the training data with --manipulate's manipulation applied, its sha256, the forget set's sha256): (data, None,
    None) without it."""
    if cfg.manipulate is None:
        return data, None, None
    from unlearn_cli.io.forget import read_forget_set

    forget = read_forget_set(cfg.manipulate, num_train=data.num_train, dataset=cfg.dataset, override_flag=None)
    if forget.manipulation is None:
        raise UserError(f"{forget.source}: --manipulate needs a forget set that carries a manipulation; write one "
                        f"with `unlearn split --kind mislabel` or `--kind poison`")
    return forget.manipulation.apply(data, forget.source), forget.manipulation.sha256, forget.sha256


def _retain_set(cfg: TrainConfig, data: ImageData) -> tuple[torch.Tensor | None, str | None]:
    """(training indices, sha256 of the excluded forget set): (None, None) without --exclude."""
    if cfg.exclude is None:
        return None, None
    from unlearn_cli.data.splits import retain_indices
    from unlearn_cli.io.forget import read_forget_set

    forget = read_forget_set(cfg.exclude, num_train=data.num_train, dataset=cfg.dataset, override_flag=None)
    indices = retain_indices(data.num_train, forget.indices)
    if len(indices) == 0:
        raise UserError(f"{forget.source}: --exclude leaves no training data (it names all {data.num_train} "
                        f"examples of {cfg.dataset}); exclude fewer examples")
    return indices, forget.sha256


def _train(cfg: TrainConfig, output: str, target: torch.device, shard, quiet: bool, fast: FastPath, data: ImageData,
           indices: torch.Tensor | None, provenance: Provenance, description: str):
    """Train on this process's device and shard; rank 0 writes the checkpoint. -> (model, data, seconds)"""
    from unlearn_cli.cost import WorkMeter
    from unlearn_cli.distributed import confirm_replicas
    from unlearn_cli.engine import train_classifier

    extra = {}
    if shard.world > 1:
        extra["world_size"] = str(shard.world)
    model = _fresh_model(cfg, data, target)
    data.to(target, fast.memory_format)
    settings = _loop_settings(cfg)
    started = time.perf_counter()
    steps = cfg.epochs * shard.batches_per_epoch(data.num_train if indices is None else len(indices), cfg.batch_size)
    record = _record(cfg, 1, data, target)
    with progress_bar(description, steps, quiet) as on_step, WorkMeter() as meter:
        train_classifier(model, data, indices, settings, cfg.batch_size, cfg.seed, target, on_step, fast=fast,
                         shard=shard, record=record)
    wall_time = time.perf_counter() - started
    confirm_replicas(model)  # every rank got here with the same weights, or nothing is written
    confidence = None if record is None else record.means()[0]  # every rank's shard (a collective)
    model = model.cpu()
    if shard.is_main:  # every rank trained on its shard of each batch: the run's work is the ranks' together
        _write(cfg, output, model, data, wall_time, provenance, extra, meter.work.scaled(shard.world), confidence)
    return model, data, wall_time


def _record(cfg: TrainConfig, models: int, data: ImageData, target: torch.device) -> ConfidenceRecord | None:
    """The training-time confidence record of `models` models, or None without --record-memorization."""
    from unlearn_cli.engine import ConfidenceRecord

    return ConfidenceRecord(models, data.num_train, target) if cfg.record_memorization else None


def _fresh_model(cfg: TrainConfig, data: ImageData, target: torch.device):
    """The architecture initialized under the run's seed (the same on every rank, and stacked or not)."""
    from unlearn_cli.engine import seed_everything
    from unlearn_cli.models import create_model

    seed_everything(cfg.seed)
    return create_model(cfg.arch, data.num_classes, data.input_shape, **cfg.arch_options).to(target)


def _loop_settings(cfg: TrainConfig) -> LoopSettings:
    from unlearn_cli.engine import LoopSettings

    return LoopSettings(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                        max_steps=cfg.max_steps)


def _write(cfg: TrainConfig, output: str, model, data: ImageData, wall_time: float, provenance: Provenance,
           extra: dict, work: Work, training_confidence: torch.Tensor | None) -> None:
    from unlearn_cli.cost import RecordedCost
    from unlearn_cli.io.checkpoint import checkpoint_bytes, checkpoint_metadata

    meta = checkpoint_metadata(
        arch=cfg.arch, arch_kwargs=cfg.arch_options, num_classes=data.num_classes, dataset=cfg.dataset,
        dataset_kwargs=data.kwargs, input_shape=data.input_shape, config=config_dict(cfg), wall_time_s=wall_time,
        provenance=provenance, cost=RecordedCost(work), **({"data_root": cfg.data_root} if cfg.data_root else {}), **extra)
    write_output(output, checkpoint_bytes(model, meta, training_confidence))


def _train_stacked(cfg: TrainConfig, runs: list[SeedRun], target: torch.device, quiet: bool, fast: FastPath,
                   data: ImageData, indices: torch.Tensor | None, provenance: Provenance, report) -> None:
    """Every run's model at once (`unlearn_cli.stacked`), then each seed's file, as its own run would write it but
    for `stacked: true` in the config and the wall time (the pool's, shared out evenly)."""
    from unlearn_cli.cost import WorkMeter
    from unlearn_cli.stacked import train_stacked

    configs = [dataclasses.replace(cfg, seed=run.seed) for run in runs]
    models = [_fresh_model(run_cfg, data, target) for run_cfg in configs]
    data.to(target, fast.memory_format)
    started = time.perf_counter()
    steps = cfg.epochs * -(-(data.num_train if indices is None else len(indices)) // cfg.batch_size)
    record = _record(cfg, len(models), data, target)
    with progress_bar(f"train {cfg.arch} ×{len(models)} (stacked)", steps, quiet) as on_step, WorkMeter() as meter:
        train_stacked(models, data, indices, _loop_settings(cfg), cfg.batch_size, [c.seed for c in configs], target,
                      on_step, fast=fast, record=record)
    wall_time = (time.perf_counter() - started) / len(models)
    work = meter.work.shared(len(models))  # every model trained on as many examples
    confidences = [None] * len(models) if record is None else list(record.means())
    trained = {run.seed: (run_cfg, model, confidence)
               for run, run_cfg, model, confidence in zip(runs, configs, models, confidences)}

    def write_one(run: SeedRun) -> None:  # one file per seed; an interruption says which are written
        run_cfg, model, confidence = trained[run.seed]
        model = model.cpu()
        _write(run_cfg, run.output, model, data, wall_time, dataclasses.replace(provenance, seed=run_cfg.seed), {},
               work, confidence)
        report(run, model, data, wall_time)

    run_seeds(runs, write_one)
