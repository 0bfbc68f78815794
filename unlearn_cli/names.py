"""The names the registries hold, as plain tuples: what `--help` lists and what a flag accepts, without importing
the torch-using modules that register them. Each tuple is checked against its registry by tests/test_startup.py,
so a registered name missing here fails the suite.

Usage:
    from unlearn_cli.names import DATASETS, MODELS
"""

DATASETS = ("digits", "fashion-mnist", "cifar10", "svhn", "imagenet100", "synthetic")  # data.DATASETS
MODELS = ("mlp", "cnn", "resnet18", "resnet50", "vit")  # models.MODELS
