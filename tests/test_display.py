"""Output for people is whole in logs and pipes (no "…" inside a name or a number), and long work shows progress
lines at a steady cadence when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.cli import common
from unlearn_cli.cli.common import LOG_WIDTH, ProgressLines, progress_bar

ELLIPSIS = "…"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # CI may force colours on; the words must be whole between the codes


def plain(text: str) -> str:
    return ANSI.sub("", text)


def assert_whole(text: str) -> None:
    cut = [line for line in plain(text).splitlines() if ELLIPSIS in line]
    assert not cut, "lines cut with an ellipsis:\n" + "\n".join(cut)


def run_piped(*arguments, cwd=None) -> subprocess.CompletedProcess:
    """`unlearn ARGS…` as a process with stdout and stderr piped; COLUMNS=80 as a narrow shell would export it."""
    environment = {key: value for key, value in os.environ.items() if key != "TERMINAL_WIDTH"}
    environment["COLUMNS"] = "80"
    return subprocess.run([sys.executable, "-m", "unlearn_cli", *map(str, arguments)], cwd=cwd, env=environment,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", timeout=300)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def step_info(step: int, total: int | None = None) -> dict:
    info = {"epoch": 0, "step": step, "loss": 0.5, "accuracy": 0.75, "images": 32 * step}
    if total is not None:
        info["total_steps"] = total
    return info


# --- help ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("apply",), ("localize",), ("train",), ("evaluate",), ("report",), ("split",),
                                     ("info",), ("demo",), ("mask", "info"), ("mask", "compare"), ()])
def test_help_is_whole_in_process(command):
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert_whole(result.output)


def test_help_names_every_option_in_full():
    apply_help = plain(run_cli("apply", "--help").output)
    for option in ("--allow-other-model", "--allow-mismatch", "--channels-last", "--no-channels-last",
                   "--no-train-head", "--weight-decay"):
        assert option in apply_help
    localize_help = plain(run_cli("localize", "--help").output)
    assert_whole(localize_help)
    assert "--budget" in localize_help and "--strategy" in localize_help


@pytest.mark.slow
def test_help_is_whole_when_piped_from_a_process():
    for command in (("apply", "--help"), ("localize", "--help")):
        result = run_piped(*command)
        assert result.returncode == 0, result.stderr
        assert_whole(result.stdout)
    assert "--allow-other-model" in plain(run_piped("apply", "--help").stdout)


# --- tables -------------------------------------------------------------------------------------------------------


def test_console_is_wide_only_when_not_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "60")
    assert common._Console(file=io.StringIO()).width == LOG_WIDTH
    assert common._Console(file=Terminal()).width == 60  # a terminal keeps rich's own width (COLUMNS)


def test_evaluate_table_and_progress_lines_are_whole(tiny_run, tmp_path):
    long_name = tmp_path / "an_original_checkpoint_with_a_long_descriptive_name_seed0.safetensors"
    shutil.copyfile(tiny_run["original"], long_name)
    result = run_cli("evaluate", tiny_run["original"], long_name, "--forget", tiny_run["forget"],
                     "--oracle", tiny_run["oracle"], "--json", tmp_path / "results.json")
    assert result.exit_code == 0, result.output
    assert_whole(result.stderr)
    assert long_name.name in result.stderr and "original.safetensors" in result.stderr
    assert "MIA-m-entropy" in result.stderr and "strong average gap" in result.stderr
    # one line as the work starts, and one as each of oracle, original and the copy is done
    lines = [line for line in result.stderr.splitlines() if line.startswith("evaluate: ")]
    assert lines[0].startswith("evaluate: 0/3 (0%)") and "MIA" in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["evaluate: 1/3 (33%)", "evaluate: 2/3 (67%)",
                                                         "evaluate: 3/3 (100%)"]
    assert lines[1].endswith("oracle.safetensors done") and lines[3].endswith(f"{long_name.name} done")

    report = run_cli("report", tmp_path / "results.json")
    assert report.exit_code == 0, report.output
    assert_whole(report.stderr)
    assert "strong gap" in report.stderr and "original" in report.stderr


@pytest.mark.slow
def test_mask_info_of_a_wide_model_is_whole_when_piped(tiny_run, tmp_path):
    model, mask = tmp_path / "wide.safetensors", tmp_path / "mask.safetensors"
    trained = run_cli("train", *mlp_flags(width=1024, epochs=1), "--max-steps", "1", "-o", model)  # its shape matters
    assert trained.exit_code == 0, trained.output
    localized = run_piped("localize", "--model", model, "--forget", tiny_run["forget"], "--strategy", "del",
                          "--budget", "0.3", "-o", mask)
    assert localized.returncode == 0, localized.stderr
    assert_whole(localized.stderr)
    assert "localize del: 0/" in localized.stderr and "(100%)" in localized.stderr

    shown = run_piped("mask", "info", mask)
    assert shown.returncode == 0, shown.stderr
    assert_whole(shown.stdout + shown.stderr)
    assert "1,048,576" in shown.stderr and "1024×1024" in shown.stderr  # the 1024×1024 layer's parameter count

    in_process = run_cli("mask", "info", mask)
    assert in_process.exit_code == 0, in_process.output
    assert_whole(in_process.stderr)
    assert "1,048,576" in in_process.stderr


# --- progress lines -----------------------------------------------------------------------------------------------


def test_progress_lines_every_tenth_of_the_steps(capsys):
    clock = FakeClock()
    with progress_bar("train mlp", 100, False, clock=clock) as on_step:
        for step in range(1, 101):
            clock.now += 0.1
            on_step(step_info(step, 100))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11
    assert [line.split(",")[0] for line in lines] == [f"train mlp: {10 * k}/100 ({10 * k}%)" for k in range(11)]
    assert lines[0] == "train mlp: 0/100 (0%), started"
    assert "0:00:01 elapsed" in lines[1] and "eta 0:00:09" in lines[1]
    assert "epoch 1 loss 0.500 acc 75.0%" in lines[5] and "img/s" in lines[5]
    assert lines[-1].startswith("train mlp: 100/100 (100%), 0:00:10 elapsed")


def test_progress_lines_every_30_seconds_when_steps_are_slow(capsys):
    clock = FakeClock()
    with progress_bar("train resnet18", 1000, False, clock=clock) as on_step:
        for step in range(1, 10):
            clock.now += 11.0  # 11 s a step: 30 s pass long before 10% of 1000 steps
            on_step(step_info(step, 1000))
    lines = capsys.readouterr().err.splitlines()
    # 0%, then after 33 s (step 3), 66 s (step 6), 99 s (step 9); step 9 is also the last, so no extra final line
    assert [line.split(" (")[0] for line in lines] == ["train resnet18: 0/1000", "train resnet18: 3/1000",
                                                       "train resnet18: 6/1000", "train resnet18: 9/1000"]


def test_progress_lines_with_a_total_only_the_loop_knows(capsys):
    """`apply` passes total=None; the training loop reports total_steps with every step."""
    clock = FakeClock()
    with progress_bar("rft", None, False, clock=clock) as on_step:
        for step in range(1, 51):
            clock.now += 0.1
            on_step(step_info(step, 50))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "rft: started"
    assert [line.split(",")[0] for line in lines[1:]] == [f"rft: {5 * k}/50 ({10 * k}%)" for k in range(1, 11)]


def test_progress_lines_with_an_unknown_total(capsys):
    clock = FakeClock()
    with progress_bar("scan", None, False, clock=clock) as on_step:
        for step in range(1, 11):
            clock.now += 10.0
            on_step(step_info(step))
    lines = capsys.readouterr().err.splitlines()
    # time alone sets the cadence: 30 s, 60 s, 90 s, then the final line at step 10
    assert [line.split(",")[0] for line in lines] == ["scan: started", "scan: step 3", "scan: step 6", "scan: step 9",
                                                      "scan: step 10"]
    assert "0:01:40 elapsed" in lines[-1] and "%" not in lines[-1].split(",")[0]


def test_progress_lines_write_a_final_line_between_marks():
    written, clock = [], FakeClock()
    lines = ProgressLines("localize del", 100, write=written.append, clock=clock)
    lines.start()
    for step in range(1, 56):  # the work stops at 55 of 100 steps
        clock.now += 1
        lines.update(step, status="loss 0.100")
    lines.finish()
    lines.finish()  # a second finish adds nothing
    assert [line.split(",")[0] for line in written] == [f"localize del: {10 * k}/100 ({10 * k}%)" for k in range(6)] + [
        "localize del: 55/100 (55%)"]
    assert written[-1] == "localize del: 55/100 (55%), 0:00:55 elapsed, eta 0:00:45, loss 0.100"


def test_progress_lines_when_steps_jump_past_several_marks():
    """Localization counts images, in batches: one line per batch that crosses a mark, never a step twice."""
    written, clock = [], FakeClock()
    lines = ProgressLines("localize del", 1797, write=written.append, clock=clock)
    lines.start()
    for step in [*range(512, 1797, 512), 1797]:
        lines.update(step)
    lines.finish()
    assert [line.split(",")[0] for line in written] == [
        "localize del: 0/1797 (0%)", "localize del: 512/1797 (28%)", "localize del: 1024/1797 (57%)",
        "localize del: 1536/1797 (85%)", "localize del: 1797/1797 (100%)"]


def test_quiet_progress_writes_nothing(capsys):
    with progress_bar("train mlp", 10, True) as on_step:
        assert on_step is None
    assert capsys.readouterr().err == ""
