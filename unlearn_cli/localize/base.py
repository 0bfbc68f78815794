"""What every localization strategy receives: the data it may look at and its settings.

Usage:
    forget = LocalizationData.from_tensors(inputs, labels, batch_size=128)
    settings = LocalizeSettings(strategy="del", budget=0.3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

Mask = dict[str, torch.Tensor]  # parameter name -> bool tensor of the parameter's shape
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass of (inputs, labels) batches


@dataclass
class LocalizationData:
    """The forget set as re-iterable batches, and optionally the whole training set (for `weighted-grad-train`)."""

    forget_batches: Batches
    train_batches: Batches | None = None

    @classmethod
    def from_tensors(cls, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 128,
                     train: tuple[torch.Tensor, torch.Tensor] | None = None) -> "LocalizationData":
        """Batches over in-memory tensors: inputs [N, C, H, W], labels [N]."""

        def batches_of(x: torch.Tensor, y: torch.Tensor) -> Batches:
            return lambda: ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size))

        return cls(batches_of(inputs, labels), None if train is None else batches_of(*train))


@dataclass
class LocalizeSettings:
    """Options of a localization; `criterion` / `granularity` None means the strategy's preset."""

    strategy: str = "del"
    budget: float | None = None  # fraction of all trainable scalars in (0, 1]; a cap for critmem
    criterion: str | None = None  # grad | weighted-grad | weight | weighted-grad-train
    granularity: str | None = None  # parameter | neuron | layer
    topk: float = 0.1  # share of a neuron's scores averaged into its score (DEL)
    like: Mask | None = None  # `random`: reproduce this mask's per-tensor unit counts
    max_iterations: int = 100  # critmem: channels zeroed per example at most
    seed: int = 0  # `random` draws
    arch: str | None = None  # architecture name, for rules that depend on it (del-reference on vit)
    on_step: Callable[[dict], None] | None = None  # progress: {"step", "total_steps", ...}
