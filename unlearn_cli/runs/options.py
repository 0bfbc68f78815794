"""The configurations of `evaluate`, `audit` and `tune` and the checks of their values, declared without torch: the
commands build their flags and --help from these before anything is loaded; `runs.evaluate` and `runs.audit` run
them.

Usage:
    cfg = resolve_config(EvaluateConfig, config_path, given, section="evaluate")
    check_evaluate_config(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unlearn_cli import names
from unlearn_cli.config import data_root_option, device_option, option, seed_option, threads_option
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.relearn_options import RelearnOptions, check_relearn_options

MAX_BOOTSTRAP = 10_000  # `audit`'s bootstrap resamples at most
VALIDATION_SETS = 3  # forget sets a search without an oracle scores on, unless --validation-sets says otherwise


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


@dataclass
class TuneConfig:
    model: Optional[str] = option(None, "Checkpoint to unlearn from.", "--model", "-m")
    forget: Optional[str] = option(None, "Forget set (with --oracle: a validation forget set).", "--forget", "-f")
    oracle: Optional[str] = option(None, "Score by the average gap to this oracle (research mode).")
    strategy: Optional[str] = option(None, f"Localization strategy: {', '.join(names.STRATEGIES)}; none: no mask.")
    method: str = option("rft", f"One of: {', '.join(names.METHODS)}")
    budget: Optional[float] = option(None, "The budget when it is not searched.")
    params: dict = option(dict, "key=value method option that is not searched.", "--param", "-p")
    allowance: float = option(5.0, "Points of reference (and retain) accuracy a candidate may lose before it counts "
                                   "as damage")
    weights: dict = option(dict, f"part=weight of the oracle-free objective: {', '.join(names.ORACLE_FREE_PARTS)} "
                                 f"(trigger: a poison only)", "--weight", default_text="1 each; retain_fit and confidence 0")
    halving: bool = option(True, "Stop hopeless candidates early: successive halving on epochs")
    extend: int = option(2, "When the choice is a grid's smallest or largest value, try one step further that way, "
                            "at most this many times (0: never)", "--extend")
    max_cost: float = option(0.25, "Run only candidates whose predicted cost is at most F × retraining on the retain "
                                   "set with the parent's recipe (1: no cap); --grid epochs=cap,cap/2 asks for the "
                                   "most epochs the cap allows, or a share", "--max-cost")
    calibrate: bool = option(False, "End every candidate's run with the calibration step: a scale on the logits, "
                                    "fitted so that its confidence on unseen examples matches the original's, folded "
                                    "into the classifier head (--grid calibrate=false,true searches it)")
    depletion: str = option("auto", "Score acc(F) against what a model retrained without F is expected to lose on "
                                    "the classes F depletes (tune/depletion.py: the prior shift and a learning curve "
                                    "from one fit on a quarter of the training set, about 0.3× retraining once per "
                                    "search); auto: when a validation forget set depletes a class", "--depletion",
                            choices=("auto", "on", "off"))
    validation_sets: Optional[int] = option(None, "Score every candidate on K forget sets, --forget and K−1 more drawn "
                                                  "by the split it records (the seeds after its own), and choose by "
                                                  "the mean; with --oracle one (one oracle for one forget set)",
                                            "--validation-sets", default_text=f"{VALIDATION_SETS}; 1 with --oracle")
    seed: int = seed_option()  # draws the reference and validation parts and the MIA shadow sets; seeds every candidate
    device: str = device_option()
    threads: Optional[int] = threads_option()
    data_root: Optional[str] = data_root_option()
