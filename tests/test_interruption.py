"""Interrupted or failed runs leave no partial output and never touch an existing file; a command of several steps
(demo, tune, audit, a `--seeds` pool) stops at the first interruption and keeps the steps it finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import run_cli
from unlearn_cli import signals
from unlearn_cli.cli import audit, demo
from unlearn_cli.cli.demo import demo_steps
from unlearn_cli.cli.seeds import format_seeds
from unlearn_cli.errors import UserError
from unlearn_cli.signals import Interrupted
from unlearn_cli.streams import write_output, written

LONG_TRAIN = ["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "100000"]


def start(arguments: list[str], folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "unlearn_cli", *arguments], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, cwd=folder)


def wait_for_progress(process: subprocess.Popen, marker: bytes = b"train mlp: ") -> bytes:
    """Read stderr until `marker` shows (by default the training progress line: the loop is starting), at most
    120 s."""
    seen, deadline = b"", time.monotonic() + 120
    os.set_blocking(process.stderr.fileno(), False)
    while marker not in seen and time.monotonic() < deadline and process.poll() is None:
        chunk = process.stderr.read() or b""
        seen += chunk
        time.sleep(0.05)
    assert marker in seen, seen.decode()
    os.set_blocking(process.stderr.fileno(), True)
    return seen


def interrupt(arguments: list[str], folder, marker: bytes, signal_number: int) -> str:
    """Run `unlearn ARGUMENTS` in `folder`, send `signal_number` once `marker` shows on stderr; its whole stderr.
    The process must end with 128 + the signal's number."""
    process = start(arguments, folder)
    try:
        seen = wait_for_progress(process, marker)
        process.send_signal(signal_number)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    stderr = (seen + rest).decode()
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr and f"interrupted by {signal.Signals(signal_number).name}; " in stderr, stderr
    return stderr


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


def test_a_signal_inside_deferred_is_raised_when_the_block_ends(monkeypatch):
    """The handler, installed for real; a signal inside `deferred()` waits for the block's end, nested blocks
    included, and the handler raises at once again after it."""
    previous = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, signals._raise_interrupted)
    steps = []
    try:
        with pytest.raises(Interrupted) as caught:
            with signals.deferred():
                with signals.deferred():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    steps.append("inner")
                steps.append("outer")
        assert steps == ["inner", "outer"] and caught.value.signal_number == signal.SIGUSR1
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGUSR1)
            steps.append("not reached")
        assert steps == ["inner", "outer"]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_an_interrupted_rename_still_records_the_file(tmp_path, monkeypatch):
    """A signal during the rename: the file is in place, whole, and `written` says so; the interruption follows."""
    target = tmp_path / "model.safetensors"
    rename = os.replace

    def signalled(source, destination):
        signals._raise_interrupted(signal.SIGTERM, None)  # as the handler does when the signal lands here
        rename(source, destination)

    monkeypatch.setattr(os, "replace", signalled)
    with pytest.raises(Interrupted):
        write_output(target, b"new contents")
    assert target.read_bytes() == b"new contents" and written(target) and not written(tmp_path / "other")
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


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


# --- commands of several steps: the first interruption ends them, what is complete stays -------------------------

MODEL = ["--dataset", "digits", "--arch", "mlp", "--arch-option", "width=32"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A forget set, originals and oracles of seeds 0-1 (10 epochs) and the originals unlearned: what the multi-step
    commands read."""
    folder = tmp_path_factory.mktemp("inputs")
    forget = folder / "forget.json"
    for arguments in (
        ["split", "--dataset", "digits", "--kind", "noniid", "--classes", "2,5", "--fraction", "0.05", "-o", forget, "-q"],
        ["train", *MODEL, "--epochs", "10", "--seeds", "0-1", "-q", "-o", folder / "m-{seed}.safetensors"],
        ["train", *MODEL, "--epochs", "10", "--seeds", "0-1", "-q", "--exclude", forget, "-o", folder / "r-{seed}.safetensors"],
        ["apply", "--seeds", "0-1", "-m", folder / "m-{seed}.safetensors", "-f", forget, "--method", "finetune",
         "--epochs", "1", "-q", "-o", folder / "u-{seed}.safetensors"],
    ):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    return folder


def complete(path) -> bool:
    """Whether a safetensors file reads whole (every tensor)."""
    with safe_open(str(path), "pt") as file:
        return all(file.get_tensor(key) is not None for key in file.keys())


def assert_seed_prefix(folder, stderr: str, count: int) -> None:
    """The files of seeds 0 … k−1 exist and read whole, for some 1 ≤ k < count, no later seed's and no temporary;
    the message names both parts."""
    names = sorted(path.name for path in folder.iterdir())
    assert not [name for name in names if name.startswith(".")], names
    written = len(names)
    assert 1 <= written < count and names == sorted(f"s-{seed}.safetensors" for seed in range(written)), (names, stderr)
    assert all(complete(folder / name) for name in names)
    assert f"the files of seeds {format_seeds(range(written))} are written and complete" in stderr, stderr
    assert f"run the rest with --seeds {format_seeds(range(written, count))}" in stderr, stderr


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_stops_and_keeps_its_finished_steps(tmp_path, signal_number):
    stderr = interrupt(["demo", "--folder", "run"], tmp_path, b"$ unlearn train", signal_number)
    assert "demo finished" not in stderr and "steps are complete (split" in stderr, stderr
    steps = [arguments[-1].split("/")[-1] for arguments in demo_steps(Path("run"))]
    names = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert 1 <= len(names) < len(steps) and set(names) == set(steps[:len(names)]), names  # no later step's file
    assert json.loads((tmp_path / "run" / "forget.json").read_text())["indices"]
    assert all(complete(tmp_path / "run" / name) for name in names if name.endswith(".safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("command, marker, count", [
    (["train", *MODEL, "--epochs", "200"], b"(seed 1)", 4),
    (["apply", "-m", "{inputs}/m-0.safetensors", "-f", "{inputs}/forget.json", "--method", "finetune", "--epochs", "100"],
     b"(seed 1)", 4),
    (["localize", "-m", "{inputs}/m-0.safetensors", "-f", "{inputs}/forget.json", "--budget", "0.3"], b"mask -> ", 400),
])
def test_an_interrupted_pool_keeps_the_seeds_it_finished(inputs, tmp_path, command, marker, count):
    (tmp_path / "out").mkdir()
    command = [part.replace("{inputs}", str(inputs)) for part in command]
    stderr = interrupt([*command, "--seeds", f"0-{count - 1}", "-o", "out/s-{seed}.safetensors"], tmp_path, marker,
                       signal.SIGINT)
    assert_seed_prefix(tmp_path / "out", stderr, count)


@pytest.mark.slow
@pytest.mark.parametrize("command, marker", [
    (["tune", "-m", "{inputs}/m-0.safetensors", "-f", "{inputs}/forget.json", "--method", "finetune",
      "--grid", "lr=0.01,0.03,0.1", "--grid", "epochs=1,2", "--max-cost", "1", "-o", "out"], b"tune finetune: "),
    (["audit", "--forget", "{inputs}/forget.json", "--unlearned", "{inputs}/u-*.safetensors", "--retrained",
      "{inputs}/r-*.safetensors", "--original", "{inputs}/m-*.safetensors", "--bootstrap", "10000", "--json", "out"],
     b"audit: 6/6"),
])
def test_an_interrupted_search_or_audit_writes_nothing(inputs, tmp_path, command, marker):
    (tmp_path / "out").write_text("previous")
    command = [part.replace("{inputs}", str(inputs)) for part in command]
    stderr = interrupt(command, tmp_path, marker, signal.SIGTERM)
    assert "no output was written and existing files are untouched" in stderr
    assert (tmp_path / "out").read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_demo_step_interrupted_stops_the_demo(tmp_path, monkeypatch):
    """In process: the second step is interrupted; the first step's file stays, no later step runs."""
    steps = [["split", "--dataset", "digits", "--fraction", "0.05", "-o", str(tmp_path / "forget.json")],
             ["train", *MODEL, "--epochs", "1", "-o", str(tmp_path / "original.safetensors")],
             ["train", *MODEL, "--epochs", "1", "-o", str(tmp_path / "oracle.safetensors")]]
    monkeypatch.setattr(demo, "demo_steps", lambda folder: steps)

    def interrupted(*arguments, **options):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr("unlearn_cli.engine.train_classifier", interrupted)  # `train` imports it when it runs
    result = run_cli("demo", "--folder", tmp_path)
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted by SIGTERM; 1 of the demo's 3 steps are complete (split; their files are in {tmp_path}/), "
        f"the later ones did not run")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["forget.json"]


def test_a_failed_demo_step_stops_the_demo(tmp_path, monkeypatch):
    steps = [["train", *MODEL, "--epochs", "0", "-o", str(tmp_path / "original.safetensors")],
             ["split", "--dataset", "digits", "--fraction", "0.05", "-o", str(tmp_path / "forget.json")]]
    monkeypatch.setattr(demo, "demo_steps", lambda folder: steps)
    result = run_cli("demo", "--folder", tmp_path)
    assert result.exit_code == 1 and "demo step `unlearn train` failed (exit 1)" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_an_audit_interrupted_between_outputs_names_the_complete_ones(inputs, tmp_path, monkeypatch):
    def interrupted(*arguments, **options):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(audit, "print_json", interrupted)
    csv = tmp_path / "audit.csv"
    result = run_cli("audit", "--forget", inputs / "forget.json", "--unlearned", f"{inputs}/u-*.safetensors",
                     "--retrained", f"{inputs}/r-*.safetensors", "--bootstrap", "0", "--per-example", csv,
                     "--json", tmp_path / "audit.json", "-q")
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == (f"interrupted by SIGINT; {csv} is written and complete, the other outputs are "
                                     f"not")
    assert csv.read_text().startswith("index,label,class,epsilon") and not (tmp_path / "audit.json").exists()
