"""Numbers about masks: how much each tensor selects, and how two masks overlap (plain dicts; no rendering).

`mask_summary` takes torch tensors or numpy arrays (`mask info` reads a mask without torch).

Usage:
    summary = mask_summary(mask)          # {"selected", "total", "selected_fraction", "tensors": [...]}
    overlap = mask_overlap(mask_a, mask_b)  # {"iou", "intersection", "union", "tensors": [...]}
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from unlearn_cli.errors import UserError

if TYPE_CHECKING:
    from unlearn_cli.localize.base import Mask


def natural_order(names) -> list[str]:
    """Names with their numbers compared as numbers ("layer2" before "layer10"): a readable tensor order."""
    return sorted(names, key=lambda name: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)])


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def mask_summary(mask: Mask) -> dict:
    """Selected scalars per tensor and in total; for tensors with ndim >= 2 also whole and partly selected rows.
    The tensors may be torch's or numpy's (only what both spell alike is used: `.all(1)`, not `dim=` or `axis=`)."""
    tensors = []
    for name in natural_order(mask):
        selected = mask[name]
        entry = {"name": name, "shape": list(selected.shape), "selected": int(selected.sum()),
                 "total": math.prod(selected.shape)}
        entry["fraction"] = _fraction(entry["selected"], entry["total"])
        if len(selected.shape) >= 2:
            rows = selected.reshape(selected.shape[0], -1)
            full = rows.all(1)
            entry.update(rows=rows.shape[0], rows_selected=int(full.sum()),
                         rows_partial=int((rows.any(1) & ~full).sum()))
        tensors.append(entry)
    selected, total = sum(t["selected"] for t in tensors), sum(t["total"] for t in tensors)
    return {"selected": selected, "total": total, "selected_fraction": _fraction(selected, total), "tensors": tensors}


def _iou(intersection: int, union: int) -> float:
    return intersection / union if union else 1.0  # two empty selections are identical


def mask_overlap(first: Mask, second: Mask, first_name: str = "first", second_name: str = "second") -> dict:
    """Intersection over union, overall and per tensor; the masks must cover the same tensors and shapes."""
    if set(first) != set(second):
        only = sorted(set(first) ^ set(second))[0]
        raise UserError(f"{first_name} and {second_name} cover different tensors (e.g. {only}); compare masks of the same model")
    tensors = []
    for name in natural_order(first):
        a, b = first[name], second[name]
        if a.shape != b.shape:
            raise UserError(f"{first_name} and {second_name} differ in the shape of {name} "
                            f"({tuple(a.shape)} vs {tuple(b.shape)}); compare masks of the same model")
        a, b = a.bool(), b.bool()
        intersection, union = int((a & b).sum()), int((a | b).sum())
        tensors.append({"name": name, "first": int(a.sum()), "second": int(b.sum()), "intersection": intersection,
                        "union": union, "iou": _iou(intersection, union)})
    intersection, union = sum(t["intersection"] for t in tensors), sum(t["union"] for t in tensors)
    return {"first": sum(t["first"] for t in tensors), "second": sum(t["second"] for t in tensors),
            "intersection": intersection, "union": union, "iou": _iou(intersection, union), "tensors": tensors}
