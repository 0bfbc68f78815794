"""`unlearn calibrate`: give an unlearned checkpoint retraining's confidence scale after the fact, as `apply
--calibrate` would have (docs/calibration.md): the same file but for the wall time.

Usage:
    unlearn calibrate -m del.safetensors --parent original.safetensors -f forget.json -o del-calibrated.safetensors
    unlearn calibrate --seeds 0-31 -m 'pool/del-{seed}.safetensors' --parent 'pool/original-{seed}.safetensors' \\
        -f forget.json -o 'pool/del-calibrated-{seed}.safetensors'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.cli.seeds import PoolModels, SeedRun, plan_seeds, run_seeds, seeds_option
from unlearn_cli.config import data_root_option, device_option, option, resolve_config, threads_option
from unlearn_cli.errors import UserError
from unlearn_cli.streams import write_output


@dataclass
class CalibrateConfig:
    model: Optional[str] = option(None, "Unlearned checkpoint to calibrate (written by `unlearn apply`).", "--model",
                                  "-m")
    parent: Optional[str] = option(None, "The checkpoint it was unlearned from.", "--parent")
    forget: Optional[str] = option(None, "The forget set it was unlearned on.", "--forget", "-f")
    tune_seed: int = option(0, "The --seed of `unlearn tune` whose validation part the scale is fitted on (evaluate "
                               "--test-part reported --tune-seed leaves it out)", "--tune-seed")
    data_root: Optional[str] = data_root_option()
    device: str = device_option()
    threads: Optional[int] = threads_option()


SeedsOption = seeds_option("-m and --parent may hold {seed} too (one file per seed); the dataset and --forget are "
                           "read once.", "pool/del-calibrated-{seed}.safetensors", "")


@handle_errors
@with_options(CalibrateConfig)
def calibrate(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Calibrated checkpoint to write (.safetensors).")],
    seeds: SeedsOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Fit retraining's confidence scale to an unlearned checkpoint and fold it into its classifier head."""
    from unlearn_cli.engine import select_device, use_threads  # here: --help needs no torch
    from unlearn_cli.io.checkpoint import checkpoint_bytes, load_checkpoint
    from unlearn_cli.lineage import check_calibratable, check_fits_data
    from unlearn_cli.runs.calibrate import calibrated_checkpoint

    cfg = resolve_config(CalibrateConfig, config, given, section="calibrate")
    cfg.threads = use_threads(cfg.threads)  # the count in use is what the metadata records
    for flag, key in (("--model", "model"), ("--parent", "parent"), ("--forget", "forget")):
        if getattr(cfg, key) is None:
            raise UserError(f"{flag} is required: pass {flag}, or set `{key}:` in {config or 'a --config YAML'}")
    runs = plan_seeds(seeds, None, output, {"--model": cfg.model, "--parent": cfg.parent, "--forget": cfg.forget,
                                            "--config": config},
                      templated=("--model", "--parent"), example="pool/del-calibrated-{seed}.safetensors")
    device = select_device(cfg.device)
    models = PoolModels(runs, cfg.data_root, cfg.forget, allow_mismatch=False)

    def calibrate_one(run: SeedRun) -> None:
        unlearned, parent = models.model(run), load_checkpoint(run.paths["--parent"])
        check_fits_data(parent, unlearned, models.data, "--parent")
        check_calibratable(unlearned, parent, models.forget_set)
        model, meta, scale = calibrated_checkpoint(unlearned, parent, models.data, models.forget_set.indices,
                                                   cfg.tune_seed, device)
        write_output(run.output, checkpoint_bytes(model, meta))
        if not quiet:
            stderr.print(f"{unlearned.source} calibrated ×{scale:.3f} -> {run.output}")

    run_seeds(runs, calibrate_one)
