"""What `unlearn` loads before it works, and tables that fit 80 columns.

The commands that train nothing start without torch (benchmarks/bench_startup.py times them); every table and
--help keeps its numbers and option names whole at 80 columns.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import run_cli
from test_report import record, write
from unlearn_cli.cli import common
from unlearn_cli.cli.app import COMMANDS, load_command

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def torch_loaded_after(*arguments: str) -> bool:
    """Whether `unlearn ARGUMENTS` imported torch, run in a fresh interpreter."""
    program = ("import sys\nfrom unlearn_cli.cli.app import app\n"
               f"try:\n    app({list(arguments)!r})\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
               "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_the_root_help_and_report_start_without_torch(tmp_path):
    results = write(tmp_path / "results.json", record(seed=0), record(seed=1, forget_accuracy=95.0))
    assert not torch_loaded_after("--help")
    assert not torch_loaded_after("report", "--help")
    assert not torch_loaded_after("report", str(results))


@pytest.mark.parametrize("command", [("info",), ("mask",), ("mask", "info"), ("mask", "compare"), ("mask", "random"),
                                     ("demo",), ("calibrate",), ("split",), ("train",),
                                     ("localize",), ("apply",), ("evaluate",), ("audit",), ("tune",)])
def test_a_command_s_help_starts_without_torch(command):
    assert not torch_loaded_after(*command, "--help")


def test_the_probe_sees_torch_when_a_command_loads_it(tmp_path):
    assert torch_loaded_after("split", "--dataset", "digits", "--seed", "0", "-o", str(tmp_path / "forget.json"), "-q")


def test_info_and_mask_info_read_their_files_without_torch(tiny_run, tmp_path):
    checkpoint, mask = str(tiny_run["original"]), str(tmp_path / "mask.safetensors")
    result = run_cli("localize", "-m", checkpoint, "-f", tiny_run["forget"], "--strategy", "random", "--budget", "0.3",
                     "-o", mask, "-q")
    assert result.exit_code == 0, result.output
    assert not torch_loaded_after("info", checkpoint)
    assert not torch_loaded_after("info", checkpoint, "--json", "-")
    assert not torch_loaded_after("mask", "info", mask)
    assert not torch_loaded_after("mask", "info", mask, "--json", "-")
    assert torch_loaded_after("info", checkpoint, "--load", "-q")  # builds the model, as every other command does


def test_the_torch_free_names_are_the_registries():
    from unlearn_cli import names
    from unlearn_cli.data import list_datasets
    from unlearn_cli.evaluate.keys import MIA_FEATURES
    from unlearn_cli.evaluate.mia import list_features
    from unlearn_cli.models import list_models

    assert list(MIA_FEATURES) == list_features()
    assert list(names.DATASETS) == list_datasets()
    assert list(names.MODELS) == list_models()
    assert_buffers_are_the_models_own()
    from unlearn_cli.localize import STRATEGIES, list_criteria, list_granularities, list_strategies

    assert names.STRATEGIES == {name: STRATEGIES.get(name).summary for name in list_strategies()}
    assert list(names.CRITERIA) == list_criteria()
    assert list(names.GRANULARITIES) == list_granularities()
    from unlearn_cli.method_configs import METHOD_CONFIGS
    from unlearn_cli.methods import METHODS, list_methods

    assert list(names.METHODS) == list_methods() == list(METHOD_CONFIGS)
    assert all(METHODS.get(name).summary == names.METHODS[name] for name in list_methods())


def assert_buffers_are_the_models_own():
    """Every model's state_dict less its parameters is exactly the names ending in one of names.BUFFERS (what `info`
    leaves out of its parameter count without building the model)."""
    import torch

    from unlearn_cli import names
    from unlearn_cli.models import MODELS

    for name in names.MODELS:
        with torch.device("meta"):
            model = MODELS.get(name)(num_classes=10, input_shape=(3, 32, 32))
        parameters = {key for key, _ in model.named_parameters()}
        buffers = {key for key in model.state_dict() if key.rsplit(".", 1)[-1] in names.BUFFERS}
        assert set(model.state_dict()) - parameters == buffers and not buffers & parameters, name


# --- 80 columns ---------------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def at_80_columns(renderables) -> str:
    """What the stderr console prints on an 80-column terminal."""
    console = common._Console(file=Terminal(), width=80, color_system=None, soft_wrap=True, highlight=False)
    for renderable in renderables:
        console.print(renderable)
    return console.file.getvalue()


def assert_numbers_whole(text: str, numbers) -> None:
    assert not re.search(r"\d…|…\d", text), text
    table_lines = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]  # captions wrap on the terminal itself
    assert max(len(line) for line in table_lines) <= 80, text
    for number in numbers:
        assert number in text, f"{number} cut or missing:\n{text}"


def test_report_s_tables_fit_80_columns_with_every_number_whole():
    from unlearn_cli.cli.report import _rows, render_table
    from unlearn_cli.evaluate.aggregate import group_runs, oracle_summaries

    runs = [record(seed=0, forget_accuracy=91.234), record(seed=1, forget_accuracy=95.0), record(budget=0.1),
            record(method="finetune", strategy=None, budget=None)]
    groups = group_runs(runs)
    table = render_table(_rows(groups, oracle_summaries(runs)))
    assert len(common.fitted_tables(table, common._Console(file=io.StringIO()))) == 1  # a log's console is wide: one table, as before
    numbers = {cell for column in table.columns[1:] for cell in column.cells if NUMBER.search(str(cell))}
    text = at_80_columns([table])
    assert_numbers_whole(text, numbers)
    assert text.count("del + rft") == 2 * text.count("┏")  # every part repeats the label columns


def test_audit_s_table_fits_80_columns_with_names_and_numbers_whole():
    from unlearn_cli.cli.audit import render

    row = {"name": "finetune-pool vs retrained-pool", "pool": "half", "models": (4, 4), "forget_score": 0.8125,
           "normalized_score": {"value": 0.7311, "interval": (0.6402, 0.8233)}, "final_score": 0.7904,
           "attack_accuracy": 0.5625, "attack_auc": 0.5918, "attack_normalized": {"accuracy": 0.5312},
           "kl_gaussian": {"mean": 0.0213, "p95": 0.1377}, "accuracy": {"first": {"forget": 97.5, "retain": 98.25,
                                                                                 "test": 95.75}},
           "resolution": 0.25, "intervals": {"forget_score": (0.7511, 0.8701)}, "excess": None}
    text = at_80_columns(render([row], {"forget": 96.5, "retain": 99.0, "test": 95.5}, 200))
    assert_numbers_whole(text, ["0.812", "0.751", "0.870", "0.731", "0.640", "0.823", "0.790", "0.562", "0.592",
                                "0.531", "0.021", "0.138", "97.5/98.2/95.8"])
    for word in ("finetune-pool", "retrained-pool"):
        assert word in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_every_flag_whole_at_80_columns(name, monkeypatch):
    from typer import rich_utils

    monkeypatch.setattr(rich_utils, "MAX_WIDTH", 80)
    command = load_command(name)
    groups = command.commands.items() if isinstance(command, typer.core.TyperGroup) else [(None, command)]
    for sub, each in groups:
        result = run_cli(*([name, sub] if sub else [name]), "--help")
        assert result.exit_code == 0, result.output
        text = common_plain(result.output)
        assert max(len(line) for line in text.splitlines()) <= 80
        for parameter in each.params:
            for flag in (*parameter.opts, *parameter.secondary_opts):
                if flag.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{name} {sub or ''}: {flag}"


def common_plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_piped_help_takes_the_width_of_columns():
    program = "from unlearn_cli.cli import main\nmain()"
    result = subprocess.run([sys.executable, "-c", program, "apply", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                         "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    text = common_plain(result.stdout)
    assert max(len(line) for line in text.splitlines()) == 80
    assert "--allow-other-model" in text and "--no-channels-last" in text
    assert not re.search(r"\w…", text)  # a word too long for the help column folds, it is not cut


def help_output(name: str, width: int, monkeypatch) -> str:
    """`unlearn NAME --help` at WIDTH columns, plain."""
    from typer import rich_utils

    monkeypatch.setattr(rich_utils, "MAX_WIDTH", width)
    result = run_cli(name, "--help")
    assert result.exit_code == 0, result.output
    text = common_plain(result.output)
    assert max(len(line) for line in text.splitlines()) <= width
    return text


def helped_options(name: str):
    """(first flag, help text with its whitespace collapsed) of every option of NAME that has a help text."""
    return [(parameter.opts[0], " ".join(parameter.help.split())) for parameter in load_command(name).params
            if getattr(parameter, "help", None)]


@pytest.mark.parametrize("name", ["train", "apply"])
def test_help_text_reads_whole_at_80_columns(name, monkeypatch):
    """At 80 columns the long flag names leave the help column too narrow: the panel is stacked, and every help text
    appears as it is written, its words whole and in order (a word folded into fragments breaks the sequence)."""
    text = re.sub(r"[│╭╮╰╯─]", " ", help_output(name, 80, monkeypatch))  # the panels' borders blanked
    flowing = " ".join(text.split())
    for flag, help_text in helped_options(name):
        assert help_text in flowing, f"{name} {flag}: help text folded or missing:\n{text}"
    lines = text.splitlines()
    names_line = next(index for index, line in enumerate(lines) if "--record-memorization" in line or
                      "--seeds" in line)
    assert lines[names_line + 1].startswith(" " * 6)  # the help text below its names, indented


@pytest.mark.parametrize("name", ["train", "apply"])
def test_help_keeps_its_table_at_160_columns(name, monkeypatch):
    """Wide enough, the panel stays a table: each option's help starts on the line of its names."""
    lines = help_output(name, 160, monkeypatch).splitlines()
    for flag, help_text in helped_options(name):
        line = next(line for line in lines if re.match(rf"│[ *]*{re.escape(flag)}(?![\w-])", line))  # its names
        assert help_text.split()[0] in line, f"{name} {flag}: {line}"


def test_help_paragraphs_flow_to_the_terminal_width():
    """A docstring's later paragraphs are wrapped by the terminal, not broken where the source line ended."""
    for name in COMMANDS:
        command = load_command(name)
        for each in [command, *getattr(command, "commands", {}).values()]:
            for paragraph in each.help.split("\n\n"):
                assert "\n" not in paragraph, f"{name} {each.name}: {paragraph!r}"
    text = common_plain(run_cli("info", "--help").output)
    assert "the training record and the finiteness of the weights are checked" in " ".join(text.split())
