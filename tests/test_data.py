"""Every registered dataset, read from files in the real on-disk formats (written here, small)."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FASHION_MNIST_STEMS, require_fashion_mnist
from unlearn_cli.data import create_dataset, list_datasets
from unlearn_cli.errors import UserError


def write_cifar_python(root: Path, per_batch: int = 4) -> np.ndarray:
    """cifar-10-batches-py/ as torchvision unpacks it: pickled dicts with bytes keys, uint8 rows of 3072."""
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


def test_registry_lists_every_dataset():
    assert list_datasets() == ["digits", "fashion-mnist", "cifar10", "svhn", "imagenet100", "synthetic"]


def test_digits_is_the_bundled_set_with_a_fixed_split():
    data = create_dataset("digits")
    assert (data.num_train, len(data.test_labels)) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert float(data.train_inputs.max()) == 1.0 and float(data.train_inputs.min()) == 0.0
    again = create_dataset("digits")
    assert torch.equal(data.train_labels, again.train_labels)


def test_fashion_mnist_reads_the_debian_idx_files(fashion_mnist_root):
    data = create_dataset("fashion-mnist", data_root=fashion_mnist_root)
    assert (data.num_train, len(data.test_labels), data.input_shape) == (60000, 10000, (1, 28, 28))
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10  # the real set is balanced
    assert 0.0 <= float(data.train_inputs.min()) and float(data.train_inputs.max()) == 1.0
    subset = create_dataset("fashion-mnist", data_root=fashion_mnist_root, train_subset=1000)
    assert subset.num_train == 1000 and subset.kwargs == {"train_subset": 1000}


def test_fashion_mnist_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        create_dataset("fashion-mnist", data_root=str(tmp_path))


def test_missing_fashion_mnist_skips_unless_data_is_required(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_FASHION_MNIST_ROOT", str(tmp_path))
    monkeypatch.delenv("UNLEARN_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install dataset-fashion-mnist") as skipped:
        require_fashion_mnist()
    assert str(tmp_path) in str(skipped.value) and "UNLEARN_FASHION_MNIST_ROOT" in str(skipped.value)
    monkeypatch.setenv("UNLEARN_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install dataset-fashion-mnist") as failed:
        require_fashion_mnist()
    assert "UNLEARN_REQUIRE_DATA=1" in str(failed.value)


def test_fashion_mnist_root_from_the_environment_is_used_when_complete(tmp_path, monkeypatch):
    for stem in FASHION_MNIST_STEMS:
        (tmp_path / f"{stem}.gz").write_bytes(b"")  # only their presence is checked here
    monkeypatch.setenv("UNLEARN_FASHION_MNIST_ROOT", str(tmp_path))
    monkeypatch.setenv("UNLEARN_REQUIRE_DATA", "1")
    assert require_fashion_mnist() == str(tmp_path)


def test_cifar10_python_batches(tmp_path):
    first = write_cifar_python(tmp_path)
    data = create_dataset("cifar10", data_root=str(tmp_path))
    assert (data.num_train, len(data.test_labels), data.input_shape) == (20, 4, (3, 32, 32))
    # row-major RGB planes, divided by 255, no augmentation
    assert torch.allclose(data.train_inputs[0], torch.from_numpy(first[0].reshape(3, 32, 32)).float() / 255)
    assert data.train_labels[:4].tolist() == [0, 1, 2, 3]


def test_cifar10_refuses_a_pickle_that_is_not_a_batch(tmp_path):
    write_cifar_python(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as file:
        pickle.dump({b"data": __import__("os").system}, file)  # would import os.system if unpickled freely
    with pytest.raises(UserError, match="not allowed in a CIFAR batch"):
        create_dataset("cifar10", data_root=str(tmp_path))


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.zeros((2, 3073), dtype=np.uint8)
        records[:, 0] = [3, 7]
        records[:, 1] = 255
        records.tofile(folder / name)
    data = create_dataset("cifar10", data_root=str(tmp_path))
    assert data.num_train == 10 and data.train_labels[:2].tolist() == [3, 7]
    assert float(data.train_inputs[0, 0, 0, 0]) == 1.0


def test_cifar10_missing(tmp_path):
    with pytest.raises(UserError, match="no cifar-10-batches-py/"):
        create_dataset("cifar10", data_root=str(tmp_path))


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, count in (("train_32x32.mat", 6), ("test_32x32.mat", 3)):
        images = rng.integers(0, 256, size=(32, 32, 3, count), dtype=np.uint8)
        savemat(tmp_path / name, {"X": images, "y": np.array([[10], [1], [2], [3], [4], [5]][:count], dtype=np.uint8)})
    data = create_dataset("svhn", data_root=str(tmp_path))
    assert (data.num_train, data.input_shape) == (6, (3, 32, 32))
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4, 5]  # label 10 is the digit 0


def test_imagenet100_image_folder_streams(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("n01", (255, 0, 0)), ("n02", (0, 0, 255))):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (40, 30), colour).save(folder / f"{index}.JPEG")
    data = create_dataset("imagenet100", data_root=str(tmp_path), image_size=16, num_workers=0)
    assert data.num_classes == 2 and data.input_shape == (3, 16, 16) and data.train_inputs is None
    inputs, labels = next(iter(data.batches("test", batch_size=4)))
    assert inputs.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    # red images are class 0: after ImageNet normalisation the red channel is the largest
    assert float(inputs[0, 0].mean()) > float(inputs[0, 2].mean())


def test_synthetic_is_learnable_and_shaped():
    data = create_dataset("synthetic", num_train=200, num_test=100, num_classes=4, channels=3, size=6)
    assert data.train_inputs.shape == (200, 3, 6, 6)
    means = torch.stack([data.train_inputs[data.train_labels == c].mean(0) for c in range(4)])
    nearest = ((data.test_inputs[:, None] - means[None]) ** 2).flatten(2).sum(2).argmin(1)
    assert float((nearest == data.test_labels).float().mean()) > 0.9  # class-dependent signal


def test_seeded_shuffled_batches_cover_the_indices_once():
    data = create_dataset("digits")
    indices = torch.arange(0, 100, 3)
    seen = torch.cat([labels for _, labels in data.batches("train", indices, batch_size=8, shuffle=True, seed=1, epoch=2)])
    assert sorted(seen.tolist()) == sorted(data.train_labels[indices].tolist())
    order = lambda epoch: torch.cat([x.flatten(1)[:, :3] for x, _ in data.batches("train", indices, 8, True, 1, epoch)])  # noqa: E731
    assert torch.equal(order(2), order(2)) and not torch.equal(order(2), order(3))


def test_unknown_dataset_option():
    with pytest.raises(UserError, match="dataset 'digits' has no option width; its options are: train_subset"):
        create_dataset("digits", width=3)
