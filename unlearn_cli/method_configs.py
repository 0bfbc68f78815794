"""Every unlearning method's hyperparameters, as config dataclasses declared without torch, so that `apply --help`
lists each method's options and defaults without importing the methods. What each value means and why it is the
default is said in the method's own module (methods/rft.py, …), which registers its run under the same name.

Usage:
    from unlearn_cli.method_configs import METHOD_CONFIGS
    cfg = METHOD_CONFIGS["rft"](epochs=8)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

from unlearn_cli.config import option, seed_option
from unlearn_cli.errors import UserError

SCHEDULES = ("cosine", "constant", "warmup-linear")  # the learning-rate schedules the loop runs (engine.learning_rate)


def per_method(name: str) -> Callable[[], str]:
    """--help's default of method option `name`: the methods' one value, or rft's as the example."""

    def text() -> str:
        defaults = {method: item.default for method, config_class in METHOD_CONFIGS.items()
                    for item in dataclasses.fields(config_class) if item.name == name}
        values = set(defaults.values())
        shown = {method: f"{value:g}" if isinstance(value, float) else str(value) for method, value in defaults.items()}
        return shown["rft"] if len(values) == 1 else f"per method, e.g. rft {shown['rft']}"

    return text


@dataclass
class MethodConfig:
    seed: int = seed_option()  # seeds shuffling, relabelling, resets and sampling
    batch_size: int = option(128, "Batch size", default_text=per_method("batch_size"))  # examples per batch


@dataclass
class LoopConfig(MethodConfig):
    epochs: int = option(10, "Epochs", default_text=per_method("epochs"))  # passes over the method's main set
    lr: float = option(0.01, "Learning rate", default_text=per_method("lr"))  # SGD (peak of the cosine schedule)
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(0.0, "SGD weight decay", default_text=per_method("weight_decay"))
    schedule: str = "cosine"  # one of SCHEDULES
    final_lr_fraction: float = 0.0  # the cosine schedule ends at this fraction of lr
    max_steps: Optional[int] = option(None, "Stop after this many optimizer steps.")  # smoke runs


@dataclass
class UpdateConfig(LoopConfig):
    """A loop that updates the trained model (not one that trains from scratch)."""

    freeze_bn: bool = option(False, "Keep BatchNorm running statistics unchanged")


@dataclass
class ChallengeEntryConfig(UpdateConfig):
    """The optimizer settings the NeurIPS 2023 challenge's entries share as Deep Unlearn ports them
    (github.com/xcadet/deepunlearn `munl/unlearning/kgltop*.py`, for ResNet-18 at 32×32): SGD with momentum 0.9,
    weight decay 5e-4, batch 64, lr 0.001 (ct, msg)."""

    lr: float = 0.001
    weight_decay: float = 5e-4
    batch_size: int = 64


@dataclass
class FinetuneConfig(UpdateConfig):
    epochs: int = 10
    lr: float = 0.01


@dataclass
class NegGradConfig(UpdateConfig):
    epochs: int = 5  # passes over the forget set
    lr: float = 0.003  # ascent diverges quickly: keep it small
    schedule: str = "constant"


@dataclass
class NegGradPlusConfig(UpdateConfig):
    epochs: int = 5  # passes over the retain set
    lr: float = 0.01
    schedule: str = "constant"
    beta: float = 0.99  # weight of the retain loss; 1 − beta weighs the (negated) forget loss


@dataclass
class RandomLabelConfig(UpdateConfig):
    epochs: int = 5  # passes over forget ∪ retain
    lr: float = 0.01


@dataclass
class L1SparseConfig(UpdateConfig):
    epochs: int = 10
    lr: float = 0.01
    gamma: float = 7e-5  # L1 weight at the start; decays linearly to 0 over the run


@dataclass
class RFTConfig(UpdateConfig):
    epochs: int = 20  # the paper: 30 on CIFAR-10 / ResNet-18
    lr: float = 0.1  # the paper: 0.015 on CIFAR-10 / ResNet-18; too small for the few steps of the small datasets
    final_lr_fraction: float = 0.01  # cosine down to 0.01·lr
    train_head: bool = option(True, "rft: also finetune the whole classifier head")  # the paper's setting


@dataclass
class ScrubConfig(UpdateConfig):
    epochs: int = 5  # SCRUB epochs (each: optional max phase, then one pass over the retain set)
    lr: float = 5e-4  # their code's CIFAR default
    schedule: str = "constant"
    max_epochs: int = 2  # the first this-many epochs include a max phase over the forget set
    temperature: float = 4.0  # distillation temperature
    kl_weight: float = 0.001  # alpha in their code (min-steps)
    ce_weight: float = 0.99  # gamma in their code (min-steps)


@dataclass
class SSDConfig(MethodConfig):
    selection_weight: float = 10.0  # α: a parameter is dampened where I_f > α·I_D
    dampening_constant: float = 1.0  # λ: dampened by min(λ·I_D / I_f, 1)


@dataclass
class IUConfig(MethodConfig):
    alpha: float = 1.0  # step size along H⁻¹v (1 = the influence-function estimate)
    damping: float = 0.1  # λ: H₀ = λI; smaller takes larger steps outside the sampled gradients
    num_samples: int = 256  # N: retain examples whose gradients build the Fisher estimate


@dataclass
class RetrainConfig(LoopConfig):
    epochs: Optional[int] = None  # None: the parent's training epochs (else 30)
    lr: Optional[float] = None  # None: the parent's training learning rate (else 0.1)
    batch_size: Optional[int] = None  # None: the parent's batch size (else 128)
    momentum: Optional[float] = None  # None: the parent's (else 0.9)
    weight_decay: Optional[float] = None  # None: the parent's (else 0)
    fraction: Optional[float] = None  # F in (0, 1]: the recipe's schedule compressed to F of its steps; None: all


@dataclass
class CTConfig(ChallengeEntryConfig):
    epochs: int = 3


@dataclass
class MSGConfig(ChallengeEntryConfig):
    epochs: int = 5
    schedule: str = "warmup-linear"
    init_rate: float = 0.3  # share of each re-initialized layer's weights reset
    kept_rate: float = 0.1  # the learning-rate factor of the weights of those layers that are not reset


# method name -> its config, in the order `apply --help` lists them (the registry's order: tests/test_startup.py)
METHOD_CONFIGS: dict[str, type] = {
    "finetune": FinetuneConfig, "neggrad": NegGradConfig, "neggrad+": NegGradPlusConfig,
    "random-label": RandomLabelConfig, "l1-sparse": L1SparseConfig, "rft": RFTConfig, "scrub": ScrubConfig,
    "ssd": SSDConfig, "iu": IUConfig, "retrain": RetrainConfig, "ct": CTConfig, "msg": MSGConfig,
}


def check_schedule(schedule: str) -> None:
    """A schedule the loop runs, checked where a method's options are resolved (before any work) and again by the
    loop for its direct callers."""
    if schedule not in SCHEDULES:
        raise UserError(f"schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
