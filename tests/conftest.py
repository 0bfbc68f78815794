"""Shared test helpers: run the CLI in-process and build tiny checkpoints."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unlearn_cli.cli.app import app


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the suite's processes do not oversubscribe a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*arguments: str, input: bytes | str | None = None):
    """Invoke `unlearn ARGS…` in-process; the result has exit_code, stdout, stderr."""
    return CliRunner().invoke(app, [str(a) for a in arguments], input=input)


TINY_MLP = ("--dataset", "digits", "--arch", "mlp", "--arch-option", "width=32", "--epochs", "10", "--quiet")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A digits forget set, a 2-epoch tiny MLP original and its oracle, trained once per session."""
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
