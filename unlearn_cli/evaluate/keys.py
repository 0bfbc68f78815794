"""The names of the metrics an evaluation records and how they are shown: plain Python, no torch, so that
`report` reads results files and prints them without loading a model library.

Usage:
    metric_keys()                # ["forget_accuracy", "retain_accuracy", "test_accuracy", "mia_correctness", …]
    metric_label("mia_m_entropy")   # "MIA-m-entropy"
"""

from __future__ import annotations

import math
from typing import Iterable

# The MIA features of `evaluate.mia.FEATURES`, in registration order (a registry test checks they are the same).
MIA_FEATURES = ("correctness", "confidence", "entropy", "m-entropy", "prob")
SVC_SETTINGS = {"C": 3.0, "gamma": "auto", "kernel": "rbf"}  # Fan et al. 2023, SVC_MIA

# The paper's main tables compare forget accuracy, test accuracy and MIA-correctness to the oracle;
# its appendix A.4 repeats the comparison with the stronger MIA-confidence attack.
AVERAGE_GAP_METRICS = ("forget_accuracy", "test_accuracy", "mia_correctness")
STRONG_AVERAGE_GAP_METRICS = ("forget_accuracy", "test_accuracy", "mia_confidence")


CORRECTIVE_KEYS = ("repaired_accuracy", "remembered_accuracy", "attack_success_rate")  # with a manipulation only
_LABELS = {"attack_success_rate": "attack success"}  # the rest: "forget_accuracy" -> "forget acc", …


def mia_key(feature: str) -> str:
    return "mia_" + feature.replace("-", "_")


def metric_keys(corrective: bool = False) -> list[str]:
    """Every metric key; with `corrective`, the keys measured only for a manipulated forget set too."""
    keys = ["forget_accuracy", "retain_accuracy", "test_accuracy"] + [mia_key(name) for name in MIA_FEATURES]
    return keys + list(CORRECTIVE_KEYS) if corrective else keys


def metric_label(key: str) -> str:
    """Short human name of a metric key: "forget acc", "MIA-m-entropy", …"""
    if key.startswith("mia_"):
        return "MIA-" + key[4:].replace("_", "-")
    return _LABELS.get(key, key.replace("_accuracy", " acc"))


def oracle_gaps(metrics: dict[str, float], oracle: dict[str, float]) -> dict:
    """|unlearned − oracle| per metric, the average gap and the strong average gap (both in points)."""
    gaps = {key: abs(metrics[key] - oracle[key]) for key in metrics if key in oracle}

    def mean(keys: Iterable[str]) -> float:
        keys = list(keys)
        return sum(gaps[key] for key in keys) / len(keys)

    return {"gaps": gaps, "average_gap": mean(AVERAGE_GAP_METRICS),
            "strong_average_gap": mean(STRONG_AVERAGE_GAP_METRICS)}


def number_text(value, digits: int = 3) -> str:
    """A number of an audit as shown: `digits` decimals, — for none or not finite."""
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def with_interval(value, interval, digits: int = 3) -> str:
    """`0.028 [0.021, 0.035]`, or the number alone when there is no interval."""
    if interval is None:
        return number_text(value, digits)
    return f"{number_text(value, digits)} [{number_text(interval[0], digits)}, {number_text(interval[1], digits)}]"
