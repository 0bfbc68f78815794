"""Diverging runs stop with a clear error and write nothing; non-finite models are refused."""

from __future__ import annotations

from conftest import run_cli
from presets import mlp_flags


def test_neggrad_with_a_huge_learning_rate_writes_nothing(tiny_run, tmp_path):
    output = tmp_path / "broken.safetensors"
    result = run_cli("apply", "--model", tiny_run["original"], "--forget", tiny_run["forget"], "--method", "neggrad",
                     "--lr", "1e12", "--epochs", "3", "-q", "-o", output)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "lower the learning rate" in result.stderr
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_training_that_diverges_writes_nothing(tmp_path):
    output = tmp_path / "m.safetensors"
    result = run_cli("train", *mlp_flags(width=16, epochs=3), "--lr", "1e30", "-o", output)
    assert result.exit_code == 1 and "lower the learning rate" in result.stderr
    assert not output.exists()
