"""`ImageData`, the one shape every dataset takes, and the dataset registry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from unlearn_cli.errors import UserError
from unlearn_cli.registry import Registry

DATASETS: Registry = Registry("dataset")


@dataclass
class ImageData:
    """A classification dataset: inputs float32 [N, C, H, W], labels int64 [N].

    Small datasets hold their splits as tensors (`train_inputs`, …); large ones hold a
    `torch.utils.data.Dataset` per split in `streams` and only their labels in memory.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (channels, height, width)
    train_labels: torch.Tensor  # int64 [N_train]
    test_labels: torch.Tensor  # int64 [N_test]
    train_inputs: torch.Tensor | None = None  # float32 [N_train, C, H, W]
    test_inputs: torch.Tensor | None = None
    streams: dict[str, Dataset] = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)  # what create_dataset was called with, minus data_root
    num_workers: int = 0

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    def labels(self, split: str) -> torch.Tensor:
        return self.train_labels if split == "train" else self.test_labels

    def to(self, device: torch.device) -> "ImageData":
        """Move in-memory tensors to `device` (data resident on the GPU when training there)."""
        if self.train_inputs is not None:
            self.train_inputs = self.train_inputs.to(device)
            self.test_inputs = self.test_inputs.to(device)
        return self

    def batches(
        self,
        split: str,
        indices: torch.Tensor | None = None,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        device: torch.device | str = "cpu",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (inputs, labels) from `split` ("train" or "test"), restricted to `indices`.

        Shuffling is seeded by (seed, epoch) so every run and every rank sees the same order.
        """
        labels = self.labels(split)
        order = torch.arange(len(labels)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        if shuffle:
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = order[torch.randperm(len(order), generator=generator)]
        if split in self.streams:
            loader = DataLoader(self.streams[split], batch_size=batch_size, sampler=order.tolist(),
                                num_workers=self.num_workers, pin_memory=str(device).startswith("cuda"))
            for inputs, targets in loader:
                yield inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            return
        inputs = self.train_inputs if split == "train" else self.test_inputs
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if inputs.device.type != "cpu":
                batch = batch.to(inputs.device)
            yield inputs[batch].to(device, non_blocking=True), labels.to(inputs.device)[batch].to(device, non_blocking=True)


def list_datasets() -> list[str]:
    return DATASETS.names()


def create_dataset(name: str, **kwargs) -> ImageData:
    """Build dataset `name`; unknown names and unknown options are a UserError naming the valid ones."""
    try:
        factory = DATASETS.get(name)
    except ValueError as error:
        raise UserError(str(error)) from None
    accepted = inspect.signature(factory).parameters
    if "data_root" not in accepted or kwargs.get("data_root") is None:
        kwargs.pop("data_root", None)  # in-memory datasets need no folder
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(f"dataset {name!r} has no option {', '.join(unknown)}; its options are: {', '.join(accepted) or 'none'}")
    data = factory(**kwargs)
    data.kwargs = {k: v for k, v in kwargs.items() if k != "data_root"}
    return data
