"""`ImageData`, the one shape every dataset takes, and the dataset registry."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from unlearn_cli.config import check_options
from unlearn_cli.distributed import Shard
from unlearn_cli.errors import UserError
from unlearn_cli.registry import Registry
from unlearn_cli.seeding import epoch_seed

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
    memory_format: torch.memory_format = torch.contiguous_format  # layout of the image batches (channels-last on GPUs)
    value_range: tuple[list[float], list[float]] | None = None  # streamed data: (lowest, highest) value per channel

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    def labels(self, split: str) -> torch.Tensor:
        return self.train_labels if split == "train" else self.test_labels

    def pixel_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lowest, highest) value per channel, float32 [C] each: of the in-memory training images, or as the
        streamed dataset declares it (`value_range`, e.g. the bounds of its normalization)."""
        if self.train_inputs is not None:
            dims = (0, 2, 3)  # every image and pixel, per channel, without a copy of the images
            return self.train_inputs.amin(dim=dims).float().cpu(), self.train_inputs.amax(dim=dims).float().cpu()
        if self.value_range is None:
            raise UserError(f"{self.name} is streamed and declares no value range, so a patch cannot be filled "
                            f"with its extreme values")
        low, high = self.value_range
        return torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> "ImageData":
        """Move in-memory tensors to `device` and lay batches out in `memory_format` (None: keep the layout).

        On a GPU the tensors move only when they fit in half of its free memory; otherwise they stay in
        host memory and each batch is copied over as it is needed.
        """
        if memory_format is not None:
            self.memory_format = memory_format
        if self.train_inputs is None:
            return self
        tensors = (self.train_inputs, self.test_inputs)
        if device.type == "cuda":
            size = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
            free, _ = torch.cuda.mem_get_info(device)
            if size > free // 2:
                device = torch.device("cpu")
        self.train_inputs, self.test_inputs = (tensor.to(device, memory_format=self.memory_format) for tensor in tensors)
        return self

    def test_subset(self, indices: torch.Tensor) -> "ImageData":
        """A copy whose test set is only `indices` (positions in the test set); the training set is shared."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        streams = dict(self.streams)
        if "test" in streams:
            streams["test"] = Subset(streams["test"], indices.tolist())
        return dataclasses.replace(self, test_labels=self.test_labels[indices], streams=streams,
                                   test_inputs=None if self.test_inputs is None else self.test_inputs[indices])

    def batches(
        self,
        split: str,
        indices: torch.Tensor | None = None,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        device: torch.device | str = "cpu",
        shard: Shard | None = None,
        with_examples: bool = False,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of (inputs, labels) from `split` ("train" or "test"), restricted to `indices`; with
        `with_examples`, (inputs, labels, examples): the batch's positions in the split, int64 on `device`.

        Shuffling is seeded by (seed, epoch) so every run and every rank sees the same order. With a
        `shard`, `batch_size` is the global batch: this rank takes its part of the shuffled order
        (`Shard.take`) in batches of batch_size / world.
        """
        labels = self.labels(split)
        order = torch.arange(len(labels)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        if shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            order = order[torch.randperm(len(order), generator=generator)]
        if shard is not None:
            order, batch_size = shard.take(order), shard.local_batch_size(batch_size)
        if split in self.streams:
            loader = DataLoader(self.streams[split], batch_size=batch_size, sampler=order.tolist(),
                                num_workers=self.num_workers, pin_memory=str(device).startswith("cuda"))
            for (inputs, targets), examples in zip(loader, order.split(batch_size)):
                batch = (inputs.to(device, non_blocking=True, memory_format=self.memory_format),
                         targets.to(device, non_blocking=True))
                yield (*batch, examples.to(device)) if with_examples else batch
            return
        inputs = self.train_inputs if split == "train" else self.test_inputs
        for start in range(0, len(order), batch_size):
            examples = order[start : start + batch_size]
            on_inputs = examples.to(inputs.device) if inputs.device.type != "cpu" else examples
            batch = (inputs[on_inputs].to(device, non_blocking=True),
                     labels.to(inputs.device)[on_inputs].to(device, non_blocking=True))
            yield (*batch, examples.to(device)) if with_examples else batch


def list_datasets() -> list[str]:
    return DATASETS.names()


def create_dataset(name: str, where: str = "dataset option", **kwargs) -> ImageData:
    """Build dataset `name`; unknown names, unknown options and options of the wrong type or out of range are
    a UserError naming the valid ones (`where` names the options' origin, e.g. "--dataset-option")."""
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
    kwargs = check_options(factory, kwargs, where)
    data = factory(**kwargs)
    data.kwargs = {k: v for k, v in kwargs.items() if k != "data_root"}
    return data
