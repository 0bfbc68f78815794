"""unlearn: localized machine unlearning for image classifiers (DEL and its baselines)."""

__version__ = "0.1.0"
