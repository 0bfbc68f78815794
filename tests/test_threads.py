"""`--threads N` and UNLEARN_THREADS set torch's CPU threads on every command that computes; under a parallel make the
default is one thread per job; a bad value is a one-line error; the count used is recorded in what is written."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli
from presets import mlp_flags
from test_config_consistency import ON_A_DEVICE, commands, flags
from test_seeds import one_line_error
from unlearn_cli.cli import demo
from unlearn_cli.config import default_threads, parallel_make
from unlearn_cli.io.checkpoint import load_checkpoint

TRAIN = ("train", *mlp_flags(width=8), "--max-steps", "1")


@pytest.fixture(autouse=True)
def threads_restored(monkeypatch):
    """Each test starts at one thread without UNLEARN_THREADS or MAKEFLAGS and leaves one thread behind."""
    monkeypatch.delenv("UNLEARN_THREADS", raising=False)
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


def recorded_threads(path) -> int:
    return load_checkpoint(path).config["threads"]


def test_the_flag_sets_torch_s_threads_and_is_recorded(tmp_path):
    assert run_cli(*TRAIN, "--threads", "2", "-o", tmp_path / "m.safetensors").exit_code == 0
    assert torch.get_num_threads() == 2 and recorded_threads(tmp_path / "m.safetensors") == 2


def test_the_environment_sets_them_and_the_flag_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_THREADS", "2")
    assert run_cli(*TRAIN, "-o", tmp_path / "m.safetensors").exit_code == 0
    assert torch.get_num_threads() == 2 and recorded_threads(tmp_path / "m.safetensors") == 2
    assert run_cli(*TRAIN, "--threads", "1", "-o", tmp_path / "m.safetensors").exit_code == 0
    assert torch.get_num_threads() == 1 and recorded_threads(tmp_path / "m.safetensors") == 1


def test_a_parallel_make_gets_one_thread_per_job_and_no_setting_leaves_torch_s(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    assert run_cli(*TRAIN, "-o", tmp_path / "m.safetensors").exit_code == 0
    assert torch.get_num_threads() == 2 and recorded_threads(tmp_path / "m.safetensors") == 2  # torch's, untouched
    monkeypatch.setenv("MAKEFLAGS", " -j2 --jobserver-auth=3,4")
    assert run_cli(*TRAIN, "-o", tmp_path / "m.safetensors").exit_code == 0
    assert torch.get_num_threads() == 1 and recorded_threads(tmp_path / "m.safetensors") == 1


@pytest.mark.parametrize("makeflags, parallel", [
    ("", False), (" -j1", False), ("k", False), (" -j2 --jobserver-auth=3,4", True), (" -j", True),
    ("k -j3 --jobserver-auth=fifo:/tmp/x", True), ("s -j2 --no-print-directory", True), ("--jobserver-fds=3,4 -j", True),
])
def test_what_counts_as_a_parallel_make(makeflags, parallel):
    assert parallel_make(makeflags) is parallel
    assert default_threads({"MAKEFLAGS": makeflags}) == (1 if parallel else None)
    assert default_threads({"MAKEFLAGS": makeflags, "UNLEARN_THREADS": "3"}) == 3


@pytest.mark.parametrize("value, words", [
    ("0", "--threads: 0 is out of range; it must be ≥ 1 and ≤ 1,024"),
    ("-1", "--threads: -1 is out of range; it must be ≥ 1 and ≤ 1,024"),
    ("x", "--threads 'x': not a whole number; give the number of CPU threads, e.g. --threads 1"),
])
def test_a_bad_flag_is_one_line_and_writes_nothing(tmp_path, value, words):
    assert one_line_error(run_cli(*TRAIN, f"--threads={value}", "-o", tmp_path / "m.safetensors")) == f"error: {words}"
    assert list(tmp_path.iterdir()) == [] and torch.get_num_threads() == 1


@pytest.mark.parametrize("value, words", [
    ("0", "UNLEARN_THREADS: 0 is out of range; it must be ≥ 1 and ≤ 1,024"),
    ("-1", "UNLEARN_THREADS: -1 is out of range"),
    ("x", "UNLEARN_THREADS='x': not a whole number; give the number of CPU threads, e.g. UNLEARN_THREADS=1"),
])
def test_a_bad_environment_value_is_one_line_and_writes_nothing(tmp_path, monkeypatch, value, words):
    monkeypatch.setenv("UNLEARN_THREADS", value)
    assert words in one_line_error(run_cli(*TRAIN, "-o", tmp_path / "m.safetensors"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(ON_A_DEVICE | {"demo"}))
def test_every_command_that_computes_takes_threads(name):
    assert "--threads" in flags(commands()[name])


def test_demo_passes_threads_to_the_steps_that_compute(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "demo_steps", lambda folder: [
        ["split", "--dataset", "digits", "--fraction", "0.05", "-q", "-o", str(folder / "forget.json")],
        [*TRAIN, "-o", str(folder / "m.safetensors")]])
    result = run_cli("demo", "--folder", tmp_path, "--threads", "2")
    assert result.exit_code == 0, result.output
    split_line, train_line = [line for line in result.stderr.splitlines() if line.startswith("$ unlearn")]
    assert "--threads" not in split_line and train_line.endswith("--threads 2")
    assert recorded_threads(tmp_path / "m.safetensors") == 2
    assert json.loads((tmp_path / "forget.json").read_text())["indices"]
