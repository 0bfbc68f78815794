"""What every localization strategy receives: the data it may look at and its settings.

Usage:
    forget = LocalizationData.from_tensors(inputs, labels, batch_size=128)
    settings = LocalizeSettings(strategy="del", budget=0.3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from unlearn_cli.localize.options import LocalizeOptions

Mask = dict[str, torch.Tensor]  # parameter name -> bool tensor of the parameter's shape
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass of (inputs, labels) batches


@dataclass
class LocalizationData:
    """The forget set as re-iterable batches, and optionally the whole training set (for `weighted-grad-train`) and
    a random sample of the retain set as large as the forget set (for `msg`)."""

    forget_batches: Batches
    train_batches: Batches | None = None
    retain_batches: Batches | None = None

    @classmethod
    def from_tensors(cls, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 128,
                     train: tuple[torch.Tensor, torch.Tensor] | None = None,
                     retain: tuple[torch.Tensor, torch.Tensor] | None = None) -> "LocalizationData":
        """Batches over in-memory tensors: inputs [N, C, H, W], labels [N]."""

        def batches_of(x: torch.Tensor, y: torch.Tensor) -> Batches:
            return lambda: ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size))

        return cls(batches_of(inputs, labels), None if train is None else batches_of(*train),
                   None if retain is None else batches_of(*retain))


@dataclass
class LocalizeSettings(LocalizeOptions):
    """A localization's options and what the caller hands over with them."""

    like: Mask | None = None  # `random`: reproduce this mask's per-tensor unit counts
    arch: str | None = None  # architecture name, for rules that depend on it (del-reference on vit)
    on_step: Callable[[dict], None] | None = None  # progress: {"step", "total_steps", ...}

    @classmethod
    def of(cls, options: LocalizeOptions, **given) -> "LocalizeSettings":
        """The settings of `options` (any LocalizeOptions, e.g. a command's config), with `given` over them."""
        return cls(**{name: getattr(options, name) for name in LocalizeOptions.__dataclass_fields__}, **given)
