"""Shared test helpers: run the CLI in-process and build tiny checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from presets import mlp_flags
from unlearn_cli.cli.app import app


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the suite's processes do not oversubscribe a 2-core machine: the
    processes tests start (`make smoke`'s commands, side by side) inherit OMP_NUM_THREADS=1, since OpenMP threads
    that outnumber the cores spin and can triple a process's CPU time."""
    threads, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if variable is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = variable


def run_cli(*arguments: str, input: bytes | str | None = None):
    """Invoke `unlearn ARGS…` in-process; the result has exit_code, stdout, stderr."""
    return CliRunner().invoke(app, [str(a) for a in arguments], input=input)


TINY_MLP = mlp_flags(width=32, epochs=10)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A digits forget set, a 10-epoch width-32 MLP original and its oracle, trained once per session."""
    folder = tmp_path_factory.mktemp("tiny")
    forget, original, oracle = folder / "forget.json", folder / "original.safetensors", folder / "oracle.safetensors"
    for arguments in (
        ("split", "--dataset", "digits", "--kind", "noniid", "--classes", "2,5", "--fraction", "0.05", "-o", forget, "-q"),
        ("train", *TINY_MLP, "-o", original),
        ("train", *TINY_MLP, "--exclude", forget, "-o", oracle),
    ):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    return {"folder": folder, "forget": forget, "original": original, "oracle": oracle}


FASHION_MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


def require_fashion_mnist() -> str | None:
    """Where the tests read Fashion-MNIST: None for the loader's default (Debian's /usr/share/datasets/fashion-mnist),
    or the folder in UNLEARN_FASHION_MNIST_ROOT. Without the four IDX files there the calling test is skipped, or
    fails with the same message when UNLEARN_REQUIRE_DATA=1 (CI sets it, so a missing package cannot pass as a skip)."""
    from unlearn_cli.data.loaders import FASHION_MNIST_ROOT

    chosen = os.environ.get("UNLEARN_FASHION_MNIST_ROOT") or None
    root = Path(chosen or FASHION_MNIST_ROOT).expanduser()
    missing = [stem for stem in FASHION_MNIST_STEMS if not (root / stem).exists() and not (root / f"{stem}.gz").exists()]
    if missing:
        message = (f"Fashion-MNIST is not installed: {', '.join(missing)} (or .gz) not found in {root}; install it with "
                   f"`apt-get install dataset-fashion-mnist`, or set UNLEARN_FASHION_MNIST_ROOT to a folder with the IDX files")
        if os.environ.get("UNLEARN_REQUIRE_DATA") == "1":
            pytest.fail(f"{message} (UNLEARN_REQUIRE_DATA=1 makes missing data a failure)", pytrace=False)
        pytest.skip(message)
    return str(root) if chosen else None


@pytest.fixture
def fashion_mnist_root() -> str | None:
    """The `data_root` to pass for Fashion-MNIST; see require_fashion_mnist (skips or fails when the files are missing)."""
    return require_fashion_mnist()
