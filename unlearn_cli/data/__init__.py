"""Dataset registry: every dataset is an `ImageData` with in-memory tensors or a streaming source.

Usage:
    data = create_dataset("digits")
    data = create_dataset("fashion-mnist", data_root="/usr/share/datasets/fashion-mnist", train_subset=10000)
    for inputs, labels in data.batches("train", indices, batch_size=128, shuffle=True, seed=0, epoch=3): ...
"""

from unlearn_cli.data.base import DATASETS, ImageData, create_dataset, list_datasets
from unlearn_cli.data import loaders  # noqa: F401  (registers the datasets)

__all__ = ["DATASETS", "ImageData", "create_dataset", "list_datasets"]
