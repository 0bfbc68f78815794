"""Tiny sizes for every registered model and dataset, in one table: the tests generated from the registries look
their sizes up here, so a new model or dataset needs one line (test_registries checks that none is missing).

Usage:
    from presets import mlp_flags, tiny_dataset_options, tiny_model
    model = tiny_model("resnet50", num_classes=10, input_shape=(3, 8, 8))
    data = create_dataset("cifar10", **tiny_dataset_options("cifar10", tmp_path))  # small files in its own format
    run_cli("train", *mlp_flags(width=32, epochs=10), "-o", path)   # a digits MLP
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unlearn_cli.models import create_model

# model -> options small enough that forward, backward and localization take milliseconds on a CPU
MODEL_PRESETS: dict[str, dict] = {
    "mlp": {"width": 16},
    "cnn": {"width": 4},
    "resnet18": {"width": 4},
    "resnet50": {"width": 4},
    "vit": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 16, "patch": 4, "dim_head": 8},
}


def tiny_model(name: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 8, 8), seed: int = 0,
               **options) -> nn.Module:
    """Model `name` at its preset size (`options` override the preset), seeded."""
    torch.manual_seed(seed)
    return create_model(name, num_classes, input_shape, **{**MODEL_PRESETS[name], **options})


def mlp_flags(width: int = 16, epochs: int = 1, quiet: bool = True) -> tuple[str, ...]:
    """`unlearn train` flags for a digits MLP of `width`, trained `epochs` epochs (the CLI tests' usual original)."""
    return ("--dataset", "digits", "--arch", "mlp", "--arch-option", f"width={width}", "--epochs", str(epochs),
            *(("--quiet",) if quiet else ()))


# --- datasets: each one written small in its own on-disk format ---------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (LeCun's MNIST format), gzipped as Debian ships Fashion-MNIST."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_fashion_mnist(root: Path, train: int = 12, test: int = 6) -> dict:
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(count, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    return {"data_root": str(root)}


def write_cifar_python(root: Path, per_batch: int = 4) -> np.ndarray:
    """cifar-10-batches-py/ as torchvision unpacks it: pickled dicts with bytes keys, uint8 rows of 3072; returns the
    first batch's rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        first = data if first is None else first
        with open(folder / name, "wb") as file:
            pickle.dump({b"batch_label": name.encode(), b"labels": list(range(per_batch)), b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, file, protocol=2)
    return first


def write_cifar10(root: Path) -> dict:
    write_cifar_python(root)
    return {"data_root": str(root)}


def write_svhn(root: Path, train: int = 6, test: int = 3) -> dict:
    """train_32x32.mat and test_32x32.mat: X [32, 32, 3, N] uint8, y [N, 1] with 10 for the digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, count in (("train_32x32.mat", train), ("test_32x32.mat", test)):
        images = rng.integers(0, 256, size=(32, 32, 3, count), dtype=np.uint8)
        digits = np.arange(count) % 10
        savemat(root / name, {"X": images, "y": np.where(digits == 0, 10, digits).reshape(-1, 1).astype(np.uint8)})
    return {"data_root": str(root)}


def write_image_folders(root: Path) -> dict:
    """train/ and val/ ImageFolder trees of two classes: red images (n01) and blue ones (n02), two of each."""
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("n01", (255, 0, 0)), ("n02", (0, 0, 255))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (40, 30), colour).save(folder / f"{index}.JPEG")
    return {"data_root": str(root), "image_size": 16, "num_workers": 0}


# dataset -> writes its files into a folder and returns the create_dataset options that read them
DATASET_PRESETS: dict = {
    "digits": lambda root: {},  # bundled with scikit-learn
    "fashion-mnist": write_fashion_mnist,
    "cifar10": write_cifar10,
    "svhn": write_svhn,
    "imagenet100": write_image_folders,
    "synthetic": lambda root: {"num_train": 40, "num_test": 20, "num_classes": 4, "channels": 3, "size": 6},
}


def tiny_dataset_options(name: str, root: Path) -> dict:
    """Write dataset `name`'s preset files under `root` (created); the create_dataset options that read them."""
    root.mkdir(parents=True, exist_ok=True)
    return DATASET_PRESETS[name](root)
