"""Evaluation of unlearned models: accuracies, membership inference, gaps to the oracle, aggregation.

The names below are imported from their modules when first used, so importing a torch-free module of this
package (`keys`, `aggregate`, `results`, `pareto`: what `report` reads) does not import torch.

Usage:
    from unlearn_cli.evaluate import evaluate_outputs, oracle_gaps, shadow_split, mia_scores
"""

from unlearn_cli.lazy import lazy_attributes

_HOMES = {
    "accuracy_percent": "metrics", "evaluate_outputs": "metrics", "fraction_changed": "metrics",
    "metric_keys": "keys", "oracle_gaps": "keys",
    "FEATURES": "mia", "list_features": "mia", "mia_scores": "mia", "shadow_split": "mia",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_attributes(__name__, _HOMES)
