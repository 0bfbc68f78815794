"""`unlearn split` and forget-set reading (JSON, text, .npy)."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from unlearn_cli.data import create_dataset
from unlearn_cli.errors import UserError
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.hashing import sha256_indices


def split(tmp_path, *arguments):
    out = tmp_path / "forget.json"
    result = run_cli("split", "--dataset", "digits", *arguments, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), out


def test_iid_is_ten_percent_uniform(tmp_path):
    document, _ = split(tmp_path, "--kind", "iid", "--fraction", "0.1", "--seed", "3")
    assert document["format"] == "unlearn-forget/1" and document["num_train"] == 1437
    indices = document["indices"]
    assert len(indices) == round(0.1 * 1437) and indices == sorted(set(indices))
    labels = create_dataset("digits").train_labels[indices]
    assert len(torch.unique(labels)) == 10  # drawn from every class
    assert document["sha256"] == sha256_indices(torch.tensor(indices))


def test_noniid_draws_ten_percent_of_the_training_set_from_the_classes(tmp_path):
    document, _ = split(tmp_path, "--kind", "noniid", "--classes", "2,5", "--fraction", "0.1")
    labels = create_dataset("digits").train_labels[document["indices"]]
    assert len(labels) == round(0.1 * 1437)
    assert set(labels.tolist()) == {2, 5}


def test_class_kind_takes_whole_classes(tmp_path):
    document, _ = split(tmp_path, "--kind", "class", "--classes", "7", "--fraction", "1")
    all_labels = create_dataset("digits").train_labels
    assert document["indices"] == torch.nonzero(all_labels == 7).flatten().tolist()


def test_same_seed_same_bytes_other_seed_other_set(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    _, first = split(tmp_path / "a", "--seed", "1")
    _, second = split(tmp_path / "b", "--seed", "1")
    _, third = split(tmp_path / "c", "--seed", "2")
    assert first.read_bytes() == second.read_bytes() != third.read_bytes()


def test_text_and_npy_lists_are_forget_sets(tmp_path):
    (tmp_path / "f.txt").write_text("5 3\n9,1\n")
    np.save(tmp_path / "f.npy", np.array([9, 1, 5, 3]))
    text = read_forget_set(str(tmp_path / "f.txt"), num_train=10)
    array = read_forget_set(str(tmp_path / "f.npy"), num_train=10)
    assert text.indices.tolist() == array.indices.tolist() == [1, 3, 5, 9]
    assert text.sha256 == array.sha256


@pytest.mark.parametrize("content, message", [
    ("1 2 2", "1 duplicate indices"),
    ("1 -4", "negative index -4"),
    ("1 10", "index 10 is out of range for a training set of 10 examples"),
    ("", "the forget set is empty"),
    ("1 two", "'two' is not an integer index"),
    ('{"format": "unlearn-forget/9", "indices": [1]}', "unknown forget-set format 'unlearn-forget/9'"),
    ('{"format": "unlearn-forget/1", "indices": [1, 2], "sha256": "00"}', "sha256 does not match its indices"),
])
def test_bad_forget_sets(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_forget_set(str(path), num_train=10)


def test_forget_set_for_another_dataset_is_refused(tmp_path):
    _, path = split(tmp_path)
    with pytest.raises(UserError, match="forget set is for dataset 'digits', the model is trained on 'synthetic'"):
        read_forget_set(str(path), dataset="synthetic")


@pytest.mark.parametrize("arguments, message", [
    (("--kind", "noniid"), "--kind noniid needs --classes"),
    (("--kind", "noniid", "--classes", "2,11"), "--classes [11]: the dataset has classes 0..9"),
    (("--fraction", "1.5"), "--fraction: 1.5 is out of range; it must be > 0 and ≤ 1"),
    (("--kind", "noniid", "--classes", "2", "--fraction", "0.5"), "classes [2] hold only"),
    (("--classes", "2,x", "--kind", "class"), "give class numbers separated by commas"),
])
def test_split_errors_are_one_line(tmp_path, arguments, message):
    out = tmp_path / "forget.json"
    result = run_cli("split", "--dataset", "digits", *arguments, "-o", out)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not out.exists()
