"""Dataset registry: every dataset is an `ImageData` with in-memory tensors or a streaming source.

Usage:
    data = create_dataset("digits")
    data = create_dataset("fashion-mnist", data_root="/usr/share/datasets/fashion-mnist", train_subset=10000)
    for inputs, labels in data.batches("train", indices, batch_size=128, shuffle=True, seed=0, epoch=3): ...
"""

from dataclasses import dataclass
from typing import Optional

from unlearn_cli.config import data_root_option, option
from unlearn_cli.data.base import DATASETS, ImageData, create_dataset, list_datasets
from unlearn_cli.data import loaders  # noqa: F401  (registers the datasets)


@dataclass
class DatasetChoice:
    """Which dataset a command builds, and from where: the flags and YAML keys of `train` and `split`."""

    dataset: str = option("digits", lambda: f"One of: {', '.join(list_datasets())}")
    data_root: Optional[str] = data_root_option()
    dataset_options: dict = option(dict, "key=value dataset option, e.g. train_subset=10000", "--dataset-option")

    def build(self) -> ImageData:
        return create_dataset(self.dataset, data_root=self.data_root, where="--dataset-option", **self.dataset_options)


__all__ = ["DATASETS", "DatasetChoice", "ImageData", "create_dataset", "list_datasets"]
