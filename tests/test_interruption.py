"""Interrupted or failed runs leave no partial output and never touch an existing file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from unlearn_cli.errors import UserError
from unlearn_cli.streams import write_output

LONG_TRAIN = ["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "100000"]


def start(arguments: list[str], folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "unlearn_cli", *arguments], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, cwd=folder)


def wait_for_progress(process: subprocess.Popen) -> bytes:
    """Read stderr until the training progress line shows (the loop is starting), at most 120 s."""
    seen, deadline = b"", time.monotonic() + 120
    os.set_blocking(process.stderr.fileno(), False)
    while b"train mlp: " not in seen and time.monotonic() < deadline:
        chunk = process.stderr.read() or b""
        seen += chunk
        time.sleep(0.1)
    assert b"train mlp: " in seen, seen.decode()
    os.set_blocking(process.stderr.fileno(), True)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_train_keeps_the_old_file(tmp_path, signal_number):
    output = tmp_path / "model.safetensors"
    output.write_bytes(b"previous model")
    process = start([*LONG_TRAIN, "-o", str(output)], tmp_path)
    try:
        wait_for_progress(process)
        process.send_signal(signal_number)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()  # never leave a 100,000-epoch run behind when an assertion fails
    assert process.returncode == 128 + signal_number
    assert f"interrupted by {signal.Signals(signal_number).name}; no output was written" in rest.decode()
    assert output.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary left behind


def test_signal_before_any_work_is_clean(tmp_path):
    process = start([*LONG_TRAIN, "-o", str(tmp_path / "m.safetensors")], tmp_path)
    try:
        time.sleep(0.3)  # still importing
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM and b"Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(UserError, match="write failed \\(No space left on device\\); nothing was written"):
        write_output(target, b"new contents")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_missing_output_folder_is_refused_before_training(tmp_path):
    result = subprocess.run([sys.executable, "-m", "unlearn_cli", *LONG_TRAIN, "-o", str(tmp_path / "no" / "m.safetensors")],
                            capture_output=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith("does not exist; create it first")
