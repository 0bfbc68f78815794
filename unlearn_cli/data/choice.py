"""Which dataset a command builds: the options `train` and `split` share, declared without torch (`--help` lists
the names from `unlearn_cli.names`).

Usage:
    data = DatasetChoice(dataset="digits").build()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from unlearn_cli.config import data_root_option, option
from unlearn_cli.names import DATASETS


@dataclass
class DatasetChoice:
    """Which dataset a command builds, and from where: the flags and YAML keys of `train` and `split`."""

    dataset: str = option("digits", f"One of: {', '.join(DATASETS)}")
    data_root: Optional[str] = data_root_option()
    dataset_options: dict = option(dict, "key=value dataset option, e.g. train_subset=10000", "--dataset-option")

    def build(self):
        """The `ImageData` of the chosen dataset."""
        from unlearn_cli.data import create_dataset

        return create_dataset(self.dataset, data_root=self.data_root, where="--dataset-option", **self.dataset_options)
