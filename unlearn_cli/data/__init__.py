"""Dataset registry: every dataset is an `ImageData` with in-memory tensors or a streaming source.

`DatasetChoice` (the dataset options of `train` and `split`) imports without torch; the registry and the loaders
are imported when one of their names is first used.

Usage:
    data = create_dataset("digits")
    data = create_dataset("fashion-mnist", data_root="/usr/share/datasets/fashion-mnist", train_subset=10000)
    for inputs, labels in data.batches("train", indices, batch_size=128, shuffle=True, seed=0, epoch=3): ...
"""

import importlib

from unlearn_cli.data.choice import DatasetChoice

__all__ = ["DATASETS", "DatasetChoice", "ImageData", "create_dataset", "list_datasets"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(f"{__name__}.loaders")  # registers the datasets
    return getattr(importlib.import_module(f"{__name__}.base"), name)
