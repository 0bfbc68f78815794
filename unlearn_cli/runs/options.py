"""The configurations of `evaluate` and `audit` and the checks of their values, declared without torch: the
commands build their flags and --help from these before anything is loaded; `runs.evaluate` and `runs.audit` run
them.

Usage:
    cfg = resolve_config(EvaluateConfig, config_path, given, section="evaluate")
    check_evaluate_config(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unlearn_cli.config import data_root_option, device_option, option, seed_option, threads_option
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.relearn_options import RelearnOptions, check_relearn_options

MAX_BOOTSTRAP = 10_000  # `audit`'s bootstrap resamples at most


@dataclass
class EvaluateConfig(RelearnOptions):
    forget: Optional[str] = option(None, "Forget-set file the models were unlearned on.", "--forget")  # required
    oracle: Optional[str] = option(None, "Oracle: retrained without exactly this forget set.", "--oracle")
    parent: Optional[str] = option(None, "Checkpoint the models were unlearned from.", "--parent")
    data_root: Optional[str] = data_root_option()
    batch_size: int = option(512, "Inference batch size", "--batch-size")
    seed: int = seed_option()  # draws the MIA's shadow members
    device: str = device_option()
    threads: Optional[int] = threads_option()
    allow_mismatch: bool = option(False, "Accept an oracle trained without another forget set, or a forget set made "
                                         "for another dataset (recorded in the results).", "--allow-mismatch",
                                  switch=True)
    oracle_results: Optional[str] = option(None, "Take the oracle's metrics from an earlier results file of the same "
                                                 "oracle, forget set and --seed instead of measuring them again.",
                                           "--oracle-results")
    test_part: str = option("all", "all, or reported: only the test examples that `unlearn tune --seed TUNE_SEED` "
                                   "left out of its reference and validation parts", "--test-part")
    tune_seed: int = option(0, "The --seed of that `unlearn tune`", "--tune-seed")


def check_evaluate_config(cfg: EvaluateConfig) -> None:
    """The options that need each other, checked before any file is read."""
    if cfg.forget is None:
        raise UserError("--forget is required: the forget-set file the models were unlearned on")
    if cfg.oracle_results is not None and cfg.oracle is None:
        raise UserError("--oracle-results gives the metrics of the --oracle checkpoint; pass --oracle too")
    check_relearn_options(cfg)
    if cfg.relearn and cfg.oracle is None:
        raise UserError("--relearn compares each model's relearning with the oracle's; pass --oracle, a checkpoint "
                        "trained without exactly this forget set")


@dataclass
class AuditConfig(RelearnOptions):
    forget: Optional[str] = option(None, "Forget-set file the unlearned models were unlearned on.", "--forget")
    unlearned: list[str] = option(list, "Unlearned checkpoints: paths or quoted globs (repeatable).", "--unlearned")
    retrained: list[str] = option(list, "Checkpoints trained without exactly the forget set (repeatable).",
                                  "--retrained")
    original: list[str] = option(list, "The original checkpoints the unlearned ones started from (repeatable; adds "
                                       "the no-unlearning rows).", "--original")
    ceiling: list[str] = option(list, "Oracles independent of --retrained (other seeds), as many as --unlearned: the "
                                      "perfect-unlearning row at full size", "--ceiling",
                                default_text="the retrained pool's halves")
    data_root: Optional[str] = data_root_option()
    batch_size: int = option(512, "Inference batch size", "--batch-size")
    seed: int = seed_option()  # draws the retain, test and matched samples and the bootstrap's resamples
    control_size: Optional[int] = option(None, "Retain and test examples in each control sample", "--control-size",
                                         default_text="the forget set's size")
    bootstrap: int = option(200, f"Resamples of models and examples for the 95% intervals, 0 to {MAX_BOOTSTRAP:,} (0: "
                                 f"no intervals)", "--bootstrap")
    device: str = device_option()
    memorization: Optional[str] = option(None, "A checkpoint of `unlearn train` that records the memorization proxy "
                                               "(none of the pools' models or their parents), or a reference-estimate "
                                               "file: adds the rows of each memorization tercile of the forget set",
                                         "--memorization")
    threads: Optional[int] = threads_option()


def check_audit_config(cfg: AuditConfig) -> None:
    """The options' values, checked before any file is read."""
    if cfg.forget is None:
        raise UserError("--forget is required: the forget-set file the unlearned models were unlearned on")
    if cfg.control_size is not None and cfg.control_size < 1:
        raise UserError(f"--control-size {cfg.control_size}: must be at least 1")
    if not 0 <= cfg.bootstrap <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap {cfg.bootstrap}: give 0 (no intervals) to {MAX_BOOTSTRAP} resamples")
    check_relearn_options(cfg)
