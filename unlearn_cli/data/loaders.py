"""The registered datasets (README, "Datasets and models"). Nothing here downloads: files come from the user's disk.

Usage:
    create_dataset("digits")                                   # bundled with scikit-learn
    create_dataset("fashion-mnist", train_subset=10000)        # Debian's dataset-fashion-mnist files
    create_dataset("cifar10", data_root="~/data")              # cifar-10-batches-py/ or cifar-10-batches-bin/
    create_dataset("svhn", data_root="~/data/svhn")            # train_32x32.mat, test_32x32.mat
    create_dataset("imagenet100", data_root="~/data/in100")    # train/ and val/ ImageFolder trees
    create_dataset("synthetic", channels=3, size=32, num_classes=10)
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from unlearn_cli.data.base import DATASETS, ImageData
from unlearn_cli.errors import UserError
from unlearn_cli.limits import check_size

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


def _split_subset(num: int, subset: int | None, seed: int = 0) -> torch.Tensor:
    """A fixed, seeded subset of `num` indices (sorted), or all of them."""
    if subset is None or subset >= num:
        return torch.arange(num)
    if subset <= 0:
        raise UserError(f"train_subset must be positive, got {subset}")
    return torch.randperm(num, generator=torch.Generator().manual_seed(seed))[:subset].sort().values


def _in_memory(name, train_x, train_y, test_x, test_y, num_classes, train_subset=None) -> ImageData:
    keep = _split_subset(len(train_y), train_subset)
    train_x, train_y = train_x[keep], train_y[keep]
    return ImageData(
        name=name, num_classes=num_classes, input_shape=tuple(train_x.shape[1:]),
        train_inputs=train_x.contiguous(), train_labels=train_y.long(),
        test_inputs=test_x.contiguous(), test_labels=test_y.long(),
    )


@DATASETS.register("digits")
def digits(train_subset: int | None = None) -> ImageData:
    """scikit-learn's 1,797 8×8 handwritten digits; a fixed 80/20 split seeded with 0."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [1797, 1, 8, 8]
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test, train = order[:360].sort().values, order[360:].sort().values
    return _in_memory("digits", images[train], labels[train], images[test], labels[test], 10, train_subset)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path}: IDX header says {dims} but the file holds {body.size} values; is it truncated?")
    return body.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise UserError(
        f"fashion-mnist: {stem}[.gz] not found in {root}; install it with `apt-get install dataset-fashion-mnist` "
        f"or pass --data-root to a folder with the IDX files"
    )


@DATASETS.register("fashion-mnist")
def fashion_mnist(data_root: str | None = None, train_subset: int | None = None) -> ImageData:
    """Zalando's Fashion-MNIST: 60,000/10,000 28×28 grey images from IDX files; `train_subset` keeps a seeded subset."""
    root = Path(data_root or FASHION_MNIST_ROOT).expanduser()
    arrays = [_read_idx(_find(root, stem)) for stem in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    train_x, train_y, test_x, test_y = (torch.from_numpy(a.copy()) for a in arrays)
    return _in_memory("fashion-mnist", train_x.float().unsqueeze(1) / 255.0, train_y, test_x.float().unsqueeze(1) / 255.0,
                      test_y, 10, train_subset)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles of dicts of numpy arrays; admit numpy's array rebuilders and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def _cifar_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as error:
        raise UserError(f"{path}: not a CIFAR-10 python batch ({error})") from None
    return data, labels


def _cifar_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size % 3073:
        raise UserError(f"{path}: not a CIFAR-10 binary batch (size {raw.size} is not a multiple of 3073)")
    records = raw.reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


@DATASETS.register("cifar10")
def cifar10(data_root: str | None = None, train_subset: int | None = None) -> ImageData:
    """CIFAR-10 from torchvision's on-disk python batches (or the binary version); features / 255, no augmentation."""
    root = Path(data_root or ".").expanduser()
    for folder, names, reader in (
        ("cifar-10-batches-py", ([f"data_batch_{i}" for i in range(1, 6)], "test_batch"), _cifar_python_batch),
        ("cifar-10-batches-bin", ([f"data_batch_{i}.bin" for i in range(1, 6)], "test_batch.bin"), _cifar_binary_batch),
    ):
        base = root / folder if (root / folder).is_dir() else root
        if all((base / name).exists() for name in names[0] + [names[1]]):
            train = [reader(base / name) for name in names[0]]
            test_x, test_y = reader(base / names[1])
            train_x = np.concatenate([x for x, _ in train])
            train_y = np.concatenate([y for _, y in train])
            to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float() / 255.0  # noqa: E731
            return _in_memory("cifar10", to_tensor(train_x), torch.from_numpy(train_y), to_tensor(test_x),
                              torch.from_numpy(test_y), 10, train_subset)
    raise UserError(
        f"cifar10: no cifar-10-batches-py/ (data_batch_1..5, test_batch) under {root}; download CIFAR-10 "
        f"(python version) yourself and pass --data-root to the folder that holds it"
    )


@DATASETS.register("svhn")
def svhn(data_root: str | None = None, train_subset: int | None = None) -> ImageData:
    """SVHN from torchvision's on-disk `.mat` files (label 10 means digit 0); features / 255."""
    from scipy.io import loadmat

    root = Path(data_root or ".").expanduser()
    splits = []
    for name in ("train_32x32.mat", "test_32x32.mat"):
        path = root / name
        if not path.exists():
            raise UserError(f"svhn: {name} not found in {root}; download SVHN (cropped digits, .mat) and pass --data-root")
        try:
            mat = loadmat(str(path))
            images = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))).float() / 255.0
            labels = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64)) % 10
        except (KeyError, ValueError) as error:
            raise UserError(f"{path}: not an SVHN .mat file ({error})") from None
        splits.append((images, labels))
    (train_x, train_y), (test_x, test_y) = splits
    return _in_memory("svhn", train_x, train_y, test_x, test_y, 10, train_subset)


@DATASETS.register("imagenet100")
def imagenet100(data_root: str | None = None, image_size: int = 128, num_workers: int = 4) -> ImageData:
    """An ImageFolder tree with train/ and val/: random crop + flip for training, resize + center crop for test."""
    from torchvision import datasets, transforms

    root = Path(data_root or ".").expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise UserError(f"imagenet100: {root / split} not found; pass --data-root to a folder with train/ and val/ class folders")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    normalize = transforms.Normalize(mean=mean, std=std)
    train = datasets.ImageFolder(str(root / "train"), transforms.Compose([
        transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    test = datasets.ImageFolder(str(root / "val"), transforms.Compose([
        transforms.Resize(int(image_size * 8 / 7)), transforms.CenterCrop(image_size), transforms.ToTensor(), normalize]))
    if train.classes != test.classes:
        raise UserError(f"imagenet100: train/ and val/ under {root} hold different class folders")
    return ImageData(
        name="imagenet100", num_classes=len(train.classes), input_shape=(3, image_size, image_size),
        train_labels=torch.tensor(train.targets), test_labels=torch.tensor(test.targets),
        streams={"train": train, "test": test}, num_workers=num_workers,
        value_range=([-m / s for m, s in zip(mean, std)], [(1 - m) / s for m, s in zip(mean, std)]),
    )


@DATASETS.register("synthetic")
def synthetic(num_train: int = 512, num_test: int = 256, num_classes: int = 10, channels: int = 1, size: int = 8,
              noise: float = 0.5, seed: int = 0) -> ImageData:
    """Learnable class-dependent images: a random prototype per class plus Gaussian noise, for tests and smoke runs."""
    check_size((num_train + num_test + num_classes) * channels * size * size, "dataset_elements", "synthetic",
               f"{num_train} + {num_test} images of {channels}×{size}×{size} hold")
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, channels, size, size, generator=generator)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        images = prototypes[labels] + noise * torch.randn(count, channels, size, size, generator=generator)
        return images, labels

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    return _in_memory("synthetic", train_x, train_y, test_x, test_y, num_classes)
