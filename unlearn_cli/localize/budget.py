"""Budget selection: the longest prefix of units, by descending score, whose total size fits the budget.

The budget b ∈ (0, 1] is a fraction of all trainable scalars. Units are sorted by score, descending,
with ties kept in the fixed unit order (a stable sort), and the longest prefix whose total size is at
most b × total is selected; a unit is never split. b × total is computed exactly from the decimal
the user wrote (0.29 × 100 = 29, not 28.999…).

Usage:
    limit = budget_limit(0.3, units.total)
    selected = select_prefix(scores, units.sizes, limit)   # bool [units]
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

from unlearn_cli.errors import UserError, example, flag

if TYPE_CHECKING:  # torch is imported by the functions that select: a mask's budget is checked without it (mask info)
    import torch


def check_budget(budget: float) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
        raise UserError(f"{flag('budget')} {budget!r}: must be a fraction of the parameters in (0, 1], "
                        f"e.g. {example('budget', 0.3)}")
    return float(budget)


def budget_limit(budget: float, total: int) -> int:
    """The most scalars a budget allows: floor(b × total), with b read as the decimal it prints as."""
    return math.floor(Fraction(repr(float(budget))) * total)


def _comparable(scores: torch.Tensor) -> torch.Tensor:
    import torch

    scores = scores.detach().cpu().double()
    return torch.where(torch.isnan(scores), torch.full_like(scores, -math.inf), scores)


def ranking(scores: torch.Tensor) -> torch.Tensor:
    """Unit indices by descending score; equal scores keep the fixed unit order; NaN ranks last."""
    import torch

    return torch.sort(_comparable(scores), descending=True, stable=True).indices


def select_prefix(scores: torch.Tensor, sizes: torch.Tensor, limit: int) -> torch.Tensor:
    """bool [units]: the longest prefix of `ranking(scores)` whose sizes sum to at most `limit`."""
    import torch

    sizes = sizes.cpu()
    if bool((sizes == 1).all()):
        return _top_scalars(_comparable(scores), limit)
    order = ranking(scores)
    cumulative = sizes[order].cumsum(0)
    count = int((cumulative <= limit).sum())  # cumulative is non-decreasing: this counts the prefix
    selected = torch.zeros(len(scores), dtype=torch.bool)
    selected[order[:count]] = True
    return selected


def _top_scalars(scores: torch.Tensor, limit: int) -> torch.Tensor:
    """The same prefix when every unit is one scalar, without a full sort (25M scalars in a ResNet-50):
    everything above the limit-th largest score, then the earliest of the scores equal to it."""
    import torch

    count = min(limit, len(scores))
    selected = torch.zeros(len(scores), dtype=torch.bool)
    if count == 0:
        return selected
    threshold = torch.kthvalue(scores, len(scores) - count + 1).values
    selected |= scores > threshold
    tied = torch.nonzero(scores == threshold).flatten()[: count - int(selected.sum())]
    selected[tied] = True
    return selected
