"""Evaluation of unlearned models: accuracies, membership inference, gaps to the oracle, aggregation.

Usage:
    from unlearn_cli.evaluate import evaluate_outputs, oracle_gaps, shadow_split, mia_scores
"""

from unlearn_cli.evaluate.metrics import (accuracy_percent, evaluate_outputs, fraction_changed, metric_keys,
                                          oracle_gaps)
from unlearn_cli.evaluate.mia import FEATURES, list_features, mia_scores, shadow_split

__all__ = ["FEATURES", "accuracy_percent", "evaluate_outputs", "fraction_changed", "list_features", "metric_keys",
           "mia_scores", "oracle_gaps", "shadow_split"]
