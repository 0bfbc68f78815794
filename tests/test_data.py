"""Every registered dataset, read from files in the real on-disk formats (written small by presets.py)."""

import inspect
import pickle

import numpy as np
import pytest
import torch

from conftest import FASHION_MNIST_STEMS, require_fashion_mnist
from presets import tiny_dataset_options, tiny_model, write_cifar_python, write_image_folders, write_svhn
from unlearn_cli.data import DATASETS, create_dataset, list_datasets
from unlearn_cli.errors import UserError


def train_subset_datasets() -> list[str]:
    return [name for name in list_datasets() if "train_subset" in inspect.signature(DATASETS.get(name)).parameters]


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_reads_its_files_into_batches_a_model_takes(name, tmp_path):
    options = tiny_dataset_options(name, tmp_path)
    data = create_dataset(name, **options)
    for split in ("train", "test"):
        labels = data.labels(split)
        assert labels.dtype == torch.int64 and len(labels) > 0
        assert 0 <= int(labels.min()) and int(labels.max()) < data.num_classes
        batches = list(data.batches(split, batch_size=5))
        inputs = torch.cat([x for x, _ in batches])
        assert inputs.dtype == torch.float32 and inputs.shape == (len(labels), *data.input_shape)
        assert bool(inputs.isfinite().all())
        assert torch.equal(torch.cat([y for _, y in batches]), labels)  # unshuffled batches keep the files' order
    every_other = torch.arange(0, data.num_train, 2)
    shuffled = torch.cat([y for _, y in data.batches("train", every_other, batch_size=3, shuffle=True, seed=1)])
    assert sorted(shuffled.tolist()) == sorted(data.train_labels[every_other].tolist())
    low, high = data.pixel_range()
    assert low.shape == high.shape == (data.input_shape[0],) and bool((low < high).all())
    model = tiny_model("cnn", data.num_classes, data.input_shape)
    assert model(inputs[:2]).shape == (2, data.num_classes)
    assert torch.equal(create_dataset(name, **options).train_labels, data.train_labels)  # read again: the same


@pytest.mark.parametrize("name", train_subset_datasets())
def test_train_subset_keeps_a_fixed_part_of_the_training_set(name, tmp_path):
    options = tiny_dataset_options(name, tmp_path)
    full = create_dataset(name, **options)
    subset = create_dataset(name, **options, train_subset=3)
    assert subset.num_train == 3 and subset.kwargs == {"train_subset": 3}
    rows = full.train_inputs.flatten(1)
    for image, label in zip(subset.train_inputs.flatten(1), subset.train_labels):  # each one of the full set's examples
        assert bool(((rows == image).all(1) & (full.train_labels == label)).any())
    assert torch.equal(create_dataset(name, **options, train_subset=3).train_inputs, subset.train_inputs)  # seeded
    assert torch.equal(subset.test_labels, full.test_labels)  # the test set is whole


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
    data = create_dataset("svhn", **write_svhn(tmp_path, train=6, test=3))
    assert (data.num_train, data.input_shape) == (6, (3, 32, 32))
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4, 5]  # label 10 is the digit 0


def test_imagenet100_image_folder_streams(tmp_path):
    data = create_dataset("imagenet100", **write_image_folders(tmp_path))
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
