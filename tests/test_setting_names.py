"""Errors name a setting the way the user gave it: its flag, `--grid NAME`, or `--param NAME`."""

import pytest

from conftest import run_cli
from unlearn_cli.errors import UserError, example, flag, given_as
from unlearn_cli.localize.base import LocalizeSettings
from unlearn_cli.localize.strategies import resolve_settings


def test_a_setting_is_named_by_its_flag_unless_the_command_says_otherwise():
    assert (flag("max_iterations"), example("budget", 0.3)) == ("--max-iterations", "--budget 0.3")
    with given_as("grid", ["topk"]):
        assert (flag("topk"), example("topk", 0.1), flag("budget")) == ("--grid topk", "--grid topk=0.1", "--budget")
        with pytest.raises(UserError, match=r"^--grid topk 0.0: must be in \(0, 1\], e.g. --grid topk=0.1$"):
            resolve_settings(LocalizeSettings(strategy="del", budget=0.2, topk=0.0))
    assert flag("topk") == "--topk"  # the block's naming ends with it
    # a method's own option has no flag: --param where the command said nothing, else as the command says
    assert flag("num_samples", "param") == "--param num_samples"
    with given_as("grid", ["num_samples"]):
        assert flag("num_samples", "param") == "--grid num_samples"


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    return result.output.strip().splitlines()[-1]


def test_tune_names_grid_and_param_settings_as_given(tiny_run, tmp_path):
    tune = ("tune", "-m", tiny_run["original"], "-f", tiny_run["forget"], "-q", "-o", tmp_path / "t.yaml")
    assert _error(run_cli(*tune, "--strategy", "del", "--budget", "0.2", "--grid", "topk=0,0.1")) == (
        "error: --grid topk 0: must be in (0, 1], e.g. --grid topk=0.1")
    assert _error(run_cli(*tune, "--strategy", "del", "--grid", "topk=0.1,0.2")) == (
        "error: strategy del needs --budget, a fraction of the parameters in (0, 1], e.g. --budget 0.3")
    assert _error(run_cli(*tune, "--strategy", "critmem", "--grid", "max_iterations=0,2")) == (
        "error: --grid max_iterations 0: must be at least 1")
    assert _error(run_cli(*tune, "--method", "finetune", "--grid", "lr=-1,0.1")) == (
        "error: --grid lr: -1.0 is out of range; it must be > 0 and ≤ 1e+38")
    assert _error(run_cli(*tune, "--method", "finetune", "--param", "lr=-1", "--grid", "epochs=1,2")) == (
        "error: --param lr: -1.0 is out of range; it must be > 0 and ≤ 1e+38")
    assert not (tmp_path / "t.yaml").exists()


def test_apply_names_a_param_as_given_and_a_flag_as_its_flag(tiny_run, tmp_path):
    apply = ("apply", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--method", "finetune", "-q",
             "-o", tmp_path / "out.safetensors")
    # a --param lr used to be dropped silently (the unset --lr flag overrode it)
    assert _error(run_cli(*apply, "--param", "lr=-1")) == "error: --param lr: -1.0 is out of range; it must be > 0 and ≤ 1e+38"
    assert _error(run_cli(*apply, "--lr", "-1")) == "error: --lr: -1.0 is out of range; it must be > 0 and ≤ 1e+38"
    assert _error(run_cli(*apply, "--param", "beta=2")) == (
        "error: method 'finetune' has no option 'beta'; its options are: seed, batch_size, epochs, lr, momentum, "
        "weight_decay, schedule, final_lr_fraction, max_steps, freeze_bn")
    assert not (tmp_path / "out.safetensors").exists()
    # the --param value is the one used
    given = run_cli(*apply, "--param", "lr=0.005", "--epochs", "1")
    assert given.exit_code == 0, given.output
    info = run_cli("info", tmp_path / "out.safetensors", "--json", "-")
    assert '"lr": 0.005' in info.stdout


def test_localize_names_its_flags(tiny_run, tmp_path):
    localize = ("localize", "-m", tiny_run["original"], "-f", tiny_run["forget"], "-q", "-o", tmp_path / "m.safetensors")
    assert _error(run_cli(*localize, "--strategy", "del", "--budget", "0.2", "--topk", "0")) == (
        "error: --topk: 0.0 is out of range; it must be > 0 and ≤ 1")
    assert _error(run_cli(*localize, "--strategy", "critmem", "--max-iterations", "0")) == (
        "error: --max-iterations: 0 is out of range; it must be ≥ 1 and ≤ 2,147,483,647")


def test_an_unknown_schedule_is_refused_where_the_methods_options_are_resolved(tmp_path):
    """Not first by the loop, after the inputs are read and the masks computed: `apply` and `tune` refuse it before
    they read any file (here a model that does not exist)."""
    from unlearn_cli.methods import method_config

    with pytest.raises(UserError, match="^schedule 'triangle': choose one of cosine, constant, warmup-linear$"):
        method_config("finetune", {"schedule": "triangle"})
    assert method_config("msg", {}).schedule == "warmup-linear"
    expected = "error: schedule 'triangle': choose one of cosine, constant, warmup-linear"
    inputs = ("-m", tmp_path / "missing.safetensors", "-f", tmp_path / "missing.json", "--method", "finetune", "-q",
              "--param", "schedule=triangle")
    assert _error(run_cli("apply", *inputs, "-o", tmp_path / "out.safetensors")) == expected
    assert _error(run_cli("tune", *inputs, "--grid", "epochs=1,2", "-o", tmp_path / "t.yaml")) == expected
    assert list(tmp_path.iterdir()) == []
