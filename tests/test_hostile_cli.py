"""Hostile command lines, run as a user would: every probe is a one-line error with exit code 1, bounded in
time (an alarm) and memory (the child's address space capped at 2 GB beyond what torch itself reserves),
writes nothing, and leaves every input byte-identical.

The probes run in one child process (`probe_runner.py`), so torch is imported once for all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from conftest import TINY_MLP, run_cli
from presets import mlp_flags
from unlearn_cli.config import resolve_config
from unlearn_cli.cli.train import TrainConfig
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import forget_set_json, read_forget_set
from unlearn_cli.io.safetensors_file import dump_safetensors

HERE = Path(__file__).parent
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def tensors_and_meta(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata())


def forge(source: Path, target: Path, tensors: dict | None = None, **changes) -> Path:
    """A copy of checkpoint `source` with metadata fields replaced (values as stored: strings)."""
    stored, meta = tensors_and_meta(source)
    target.write_bytes(dump_safetensors(tensors or stored, {**meta, **changes}))
    return target


def npy_claiming(count: int) -> bytes:
    """A version-1 .npy file whose header claims `count` int64 values but that holds 3."""
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': ({count},), }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + np.arange(3, dtype="<i8").tobytes()


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for index in range(1, 9):
        previous = chr(ord("a") + index - 1)
        lines.append(f"{chr(ord('a') + index)}: &{chr(ord('a') + index)} [{','.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def folder(tiny_run, tmp_path_factory):
    """Real inputs (checkpoints, forget sets, a mask, a results file) and forged ones, in one folder."""
    work = tmp_path_factory.mktemp("hostile")
    original, oracle, forget = work / "original.safetensors", work / "oracle.safetensors", work / "forget.json"
    for name, path in (("original", original), ("oracle", oracle), ("forget", forget)):
        path.write_bytes(tiny_run[name].read_bytes())
    for arguments in (
        ("localize", "-m", original, "-f", forget, "--strategy", "del", "--budget", "0.3", "-q", "-o", work / "mask.safetensors"),
        ("split", "--dataset", "digits", "--kind", "iid", "--seed", "1", "-q", "-o", work / "other-forget.json"),
        ("split", "--dataset", "synthetic", "--kind", "iid", "-q", "-o", work / "synthetic-forget.json"),
        ("split", "--dataset", "digits", "--kind", "iid", "--fraction", "1", "-q", "-o", work / "all.json"),
        ("evaluate", original, "--forget", forget, "--oracle", oracle, "-q", "--json", work / "results.json"),
        ("split", "--dataset", "digits", "--kind", "poison", "--target", "0", "--fraction", "0.05", "-q", "-o",
         work / "poison.json"),
    ):
        result = run_cli(*arguments)
        assert result.exit_code == 0, result.output
    result = run_cli("localize", "-m", original, "-f", work / "other-forget.json", "--strategy", "del", "--budget", "0.3",
                     "-q", "-o", work / "other-forget-mask.safetensors")
    assert result.exit_code == 0, result.output
    tensors, mask_meta = tensors_and_meta(work / "mask.safetensors")
    (work / "edited-mask.safetensors").write_bytes(dump_safetensors(tensors, {**mask_meta, "selected": "1"}))
    (work / "overbudget-mask.safetensors").write_bytes(dump_safetensors(tensors, {**mask_meta, "budget": "0.01"}))

    forge(original, work / "wide.safetensors", arch_kwargs='{"width": 30000}')
    forge(original, work / "wide-float.safetensors", arch_kwargs='{"width": 1e6}')
    forge(original, work / "deep.safetensors", arch_kwargs='{"depth": 10000000}')
    forge(original, work / "zero-width.safetensors", arch_kwargs='{"width": 0}')
    forge(original, work / "vit-zero-heads.safetensors", arch="vit", arch_kwargs='{"heads": 0}')
    forge(original, work / "many-classes.safetensors", num_classes="1000000000")
    forge(original, work / "huge-input.safetensors", input_shape="[4096, 4096, 4096]")
    forge(original, work / "nested-config.safetensors", config="[" * 100_000 + "]" * 100_000)
    forge(original, work / "big-config.safetensors", config=json.dumps({"pad": "x" * 2_000_000}))
    forge(original, work / "huge-int-seed.safetensors", seed="9" * 400)
    forge(original, work / "synthetic-huge.safetensors", dataset="synthetic",
          dataset_kwargs='{"num_train": 1000000000000}')
    # lineage: a model trained with --exclude and --manipulate of one poison; audit pools (forged provenance)
    poison, forget_set = read_forget_set(str(work / "poison.json")), read_forget_set(str(forget))
    manipulated = poison.manipulation.sha256
    forge(original, work / "poisoned.safetensors", manipulated_sha256=manipulated)
    for seed in (0, 1):
        forge(oracle, work / f"both-{seed}.safetensors", excluded_sha256=poison.sha256, manipulated_sha256=manipulated,
              seed=str(seed))
        forge(original, work / f"poison-unlearned-{seed}.safetensors", method="finetune", seed=str(seed),
              parent_sha256=load_checkpoint(str(original)).sha256, forget_sha256=poison.sha256,
              manipulated_sha256=manipulated)
    unlearned = dict(method="finetune", parent_sha256=load_checkpoint(str(original)).sha256,
                     forget_sha256=forget_set.sha256)
    for seed in (0, 1):
        forge(original, work / f"unlearned-{seed}.safetensors", seed=str(seed), **unlearned)
    (work / "unlearned-copy.safetensors").write_bytes((work / "unlearned-0.safetensors").read_bytes())
    config = {**load_checkpoint(str(original)).config, "lr": 0.5}
    forge(original, work / "unlearned-other-lr.safetensors", seed="2", config=json.dumps(config), **unlearned)
    forge(oracle, work / "oracle-1.safetensors", seed="1")
    (work / "huge-claimed-header.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    (work / "arabic-digits.txt").write_text("\u0661\u0662 3 4")

    header = b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (work / "nested-header.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    os.symlink(original, work / "link.safetensors")

    (work / "fashion-forget.json").write_bytes(forget_set_json(torch.tensor([1, 2, 3]), dataset="fashion-mnist",
                                                               num_train=1437, kind="indices", fraction=0.0,
                                                               classes=None, seed=0))
    (work / "one-forget.json").write_bytes(forget_set_json(torch.tensor([5]), dataset="digits", num_train=1437,
                                                           kind="indices", fraction=0.0, classes=None, seed=0))
    (work / "bomb.yaml").write_text(billion_laughs())
    (work / "big.yaml").write_text("epochs: 1\n" + "# padding\n" * 500_000)
    (work / "apply-zero-epochs.yaml").write_text("method: finetune\nepochs: 0\n")
    (work / "nested-forget.json").write_text('{"format": "unlearn-forget/1", "indices": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (work / "huge-int-forget.json").write_text('{"format": "unlearn-forget/1", "indices": [1, 99999999999999999999999]}')
    (work / "huge-int-forget.txt").write_text("1 2 " + "9" * 5000)
    (work / "huge-header.npy").write_bytes(npy_claiming(10**12))
    (work / "nested-results.json").write_text("[" * 100_000 + "]" * 100_000)
    (work / "huge-reference.json").write_text(json.dumps({
        "format": "unlearn-memorization/1", "dataset": "digits", "dataset_kwargs": {}, "num_train": 10**12,
        "models": [{"sha256": "0" * 64}], "members": [1], "memorization": [0.5], "memorization_correct": [0.5]}))
    return work


def probes(work: Path) -> list[tuple[str, list, str, dict]]:
    """(id, arguments, a text the error must contain, extra fields: stdin hex, env)."""
    o, f, m = work / "original.safetensors", work / "forget.json", work / "mask.safetensors"
    new = work / "never-written.safetensors"
    localize = ["localize", "-m", o, "-f", f, "--strategy", "del", "--budget", "0.3"]
    forget_from = lambda path: ["localize", "-m", o, "-f", path, "--strategy", "del", "--budget", "0.3"]  # noqa: E731
    apply = ["apply", "-m", o, "-f", f, "--method", "finetune"]
    evaluate, never = ["evaluate", o, "--forget", f, "--json", work / "never.json"], work / "never.json"
    relearn = [*evaluate, "--oracle", work / "oracle.safetensors", "--relearn"]
    train = ["train", *TINY_MLP]
    memorized = ["split", "--dataset", "digits", "--kind", "memorization", "--level", "high"]
    poison, both = work / "poison.json", work / "both-0.safetensors"
    tune_from = lambda model, forget: ["tune", "-m", model, "-f", forget, "--method", "finetune",  # noqa: E731
                                       "--validation-sets", "1", "-o", work / "never.yaml"]
    tune = tune_from(o, f)
    audit_of = lambda forget, unlearned, retrained: [  # noqa: E731
        "audit", "--forget", forget, "--unlearned", work / unlearned, "--retrained", work / retrained, "--json", never]
    excluded_and_manipulated = "was trained with --exclude and --manipulate of the same forget set"
    cases = [
        # an output that is an input
        ("localize-over-model", [*localize, "-o", o], f"--output {o} is the same file as --model {o}", {}),
        ("apply-over-mask", [*apply, "--mask", m, "-o", m], f"--output {m} is the same file as --mask {m}", {}),
        ("evaluate-over-model", ["evaluate", o, "--forget", f, "--json", o], "--json", {}),
        ("report-over-input", ["report", work / "results.json", "-o", work / "results.json"], "is the same file as FILES", {}),
        ("output-links-to-input", [*localize, "-o", work / "link.safetensors"], "is the same file as --model", {}),
        ("train-over-excluded", [*train, "--exclude", f, "-o", f], "is the same file as --exclude", {}),
        ("info-json-over-model", ["info", o, "--json", o], "is the same file as MODEL", {}),
        ("mask-info-json-over-mask", ["mask", "info", m, "--json", m], "is the same file as MASK", {}),
        # sizes checked before anything is built (the architecture's: `info --load`, as every command that builds it)
        ("wide-checkpoint", ["info", "--load", work / "wide.safetensors"], "arch mlp needs (30000, 64)", {}),
        ("float-width", ["info", "--load", work / "wide-float.safetensors"], "width: expected int", {}),
        ("deep-checkpoint", ["info", "--load", work / "deep.safetensors"], "depth: 10000000 is out of range", {}),
        ("zero-width", ["info", "--load", work / "zero-width.safetensors"], "width: 0 is out of range", {}),
        ("vit-zero-heads", ["info", "--load", work / "vit-zero-heads.safetensors"], "heads: 0 is out of range", {}),
        ("many-classes", ["info", work / "many-classes.safetensors"], "'num_classes' must be an integer in 2…1000000", {}),
        ("huge-input", ["info", "--load", work / "huge-input.safetensors"], "exceeds the limit", {}),
        ("nested-metadata", ["info", work / "nested-config.safetensors"], "nested 100000 levels deep", {}),
        ("big-metadata-field", ["info", work / "big-config.safetensors"], "exceeds the limit", {}),
        ("huge-int-seed", ["info", work / "huge-int-seed.safetensors"], "'seed' must be an integer", {}),
        ("nested-header", ["info", work / "nested-header.safetensors"], "nested 100001 levels deep", {}),
        ("synthetic-huge", ["localize", "-m", work / "synthetic-huge.safetensors", "-f", work / "synthetic-forget.json",
                            "--strategy", "del", "--budget", "0.3", "-o", new], "num_train: 1000000000000 is out of range", {}),
        ("yaml-bomb", [*train, "--config", work / "bomb.yaml", "-o", new], "anchors and aliases", {}),
        ("big-yaml", [*train, "--config", work / "big.yaml", "-o", new], "exceeds the limit", {}),
        ("nested-forget", [*forget_from(work / "nested-forget.json"), "-o", new], "nested 100001 levels deep", {}),
        ("huge-int-forget", [*forget_from(work / "huge-int-forget.json"), "-o", new], "outside the 64-bit range", {}),
        ("huge-int-text-forget", [*forget_from(work / "huge-int-forget.txt"), "-o", new], "is not an integer index", {}),
        ("npy-claims-1e12", [*forget_from(work / "huge-header.npy"), "-o", new], "header claims 1,000,000,000,000 values", {}),
        ("nested-results", ["report", work / "nested-results.json"], "nested 100000 levels deep", {}),
        ("dev-zero", ["info", "/dev/zero"], "is a device or socket", {}),
        ("endless-stdin", [*forget_from("-"), "-o", new], "larger than the limit of 1,000",
         {"stdin": ("1 " * 5000).encode().hex(), "env": {"UNLEARN_MAX_JSON_BYTES": "1000"}}),
        ("bad-limit-variable", ["info", o], "UNLEARN_MAX_TENSOR_FILE_BYTES='lots'", {"env": {"UNLEARN_MAX_TENSOR_FILE_BYTES": "lots"}}),
        # numbers at the edge
        ("epochs-0", [*train, "--epochs", "0", "-o", new], "--epochs: 0 is out of range", {}),
        ("batch-size-0", [*train, "--batch-size", "0", "-o", new], "--batch-size: 0 is out of range", {}),
        ("max-steps-0", [*train, "--max-steps", "0", "-o", new], "--max-steps: 0 is out of range", {}),
        ("lr-0", [*train, "--lr", "0", "-o", new], "--lr: 0.0 is out of range; it must be > 0", {}),
        ("lr-negative", [*train, "--lr", "-1", "-o", new], "--lr: -1.0 is out of range", {}),
        ("lr-nan", [*train, "--lr", "nan", "-o", new], "--lr: nan is out of range", {}),
        ("arch-width-0", [*train, "--arch-option", "width=0", "-o", new], "width: 0 is out of range", {}),
        ("arch-width-huge", [*train, "--arch-option", "width=100000000", "-o", new], "choose smaller options", {}),
        ("seed-negative", [*train, "--seed", "-1", "-o", new], "--seed: -1 is out of range", {}),
        ("seed-2-64", [*train, "--seed", str(2**64), "-o", new], "is out of range", {}),
        ("synthetic-1e12", ["train", "--dataset", "synthetic", "--dataset-option", "num_train=1000000000000", "-o", new],
         "num_train: 1000000000000 is out of range", {}),
        ("synthetic-too-many-scalars", ["train", "--dataset", "synthetic", "--dataset-option", "num_train=2000000000",
                                        "--dataset-option", "size=64", "-o", new], "exceeds the limit", {}),
        ("train-subset-0", [*train, "--dataset-option", "train_subset=0", "-o", new], "train_subset: 0 is out of range", {}),
        ("exclude-everything", [*train, "--exclude", work / "all.json", "-o", new], "--exclude leaves no training data", {}),
        ("exclude-other-dataset", [*train, "--exclude", work / "fashion-forget.json", "-o", new],
         "use a forget set made for 'digits'", {}),
        ("localize-batch-0", [*localize, "--batch-size", "0", "-o", new], "--batch-size: 0 is out of range", {}),
        ("localize-topk-0", [*localize, "--topk", "0", "-o", new], "--topk: 0.0 is out of range", {}),
        ("evaluate-batch-0", ["evaluate", o, "--forget", f, "--batch-size", "0"], "--batch-size: 0 is out of range", {}),
        ("split-fraction-0", ["split", "--fraction", "0", "-o", work / "never.json"], "--fraction: 0.0 is out of range", {}),
        ("apply-epochs-0", [*apply, "--epochs", "0", "-o", new], "--epochs: 0 is out of range", {}),
        ("apply-yaml-epochs-0", ["apply", "-m", o, "-f", f, "--config", work / "apply-zero-epochs.yaml", "-o", new],
         "apply-zero-epochs.yaml: option 'epochs': 0 is out of range", {}),
        ("edited-mask", [*apply, "--mask", work / "edited-mask.safetensors", "-o", new], "the file was edited", {}),
        ("over-budget-mask", [*apply, "--mask", work / "overbudget-mask.safetensors", "-o", new],
         "more than its budget 0.01 allows", {}),
        ("mask-for-other-forget-set", [*apply, "--mask", work / "other-forget-mask.safetensors", "-o", new],
         "mask was computed for another forget set", {}),
        # the relearning test (the forget set holds 72 examples)
        ("relearn-without-oracle", [*evaluate, "--relearn"], "--relearn compares each model's relearning with the "
                                                             "oracle's; pass --oracle", {}),
        ("relearn-option-alone", [*evaluate, "--oracle", work / "oracle.safetensors", "--relearn-steps", "3"],
         "--relearn-steps is set but --relearn is not; add --relearn", {}),
        ("relearn-part-1", [*relearn, "--relearn-part", "1"], "--relearn-part 1 takes all 72 examples of the forget "
                                                               "set and leaves none to score", {}),
        ("relearn-part-below-a-batch", relearn, "--relearn-part 0.1 of the forget set's 72 examples is 7, fewer than "
                                                "one batch of --relearn-batch-size 32; raise --relearn-part to 0.444 or "
                                                "lower --relearn-batch-size to 7", {}),
        ("relearn-one-example", ["evaluate", o, "--forget", work / "one-forget.json", "--oracle",
                                 work / "oracle.safetensors", "--allow-mismatch", "--relearn", "--json", never],
         "the forget set holds 1 example; relearning needs at least 2", {}),
        ("relearn-lr-0", [*relearn, "--relearn-lr", "0.1", "--relearn-lr", "0"], "--relearn-lr: 0.0 is out of "
                                                                                 "range; it must be > 0", {}),
        ("relearn-lr-nan", [*relearn, "--relearn-lr", "nan"], "--relearn-lr: nan is out of range", {}),
        ("relearn-lr-inf", [*relearn, "--relearn-lr", "inf"], "--relearn-lr: inf is out of range", {}),
        ("relearn-lr-twice", [*relearn, "--relearn-lr", "0.1", "--relearn-lr", "0.1"],
         "--relearn-lr 0.1 is given twice", {}),
        ("relearn-steps-0", [*relearn, "--relearn-steps", "0"], "--relearn-steps: 0 is out of range", {}),
        ("relearn-batch-0", [*relearn, "--relearn-batch-size", "0"], "--relearn-batch-size: 0 is out of range", {}),
        # memorization sources (docs/memorization.md)
        ("split-over-model", [*memorized, "--model", o, "-o", o], f"--output {o} is the same file as --model {o}", {}),
        ("memorization-dev-zero", [*memorized, "--model", "/dev/zero", "-o", work / "never.json"],
         "is a device or socket", {}),
        ("reference-claims-1e12", [*memorized, "--model", work / "huge-reference.json", "-o", work / "never.json"],
         "'memorization' must be a list of 1000000000000 values", {}),
        # mistakes (#28): settings that contradict each other, pools that are not one recipe
        ("train-exclude-and-manipulate", [*train, "--exclude", poison, "--manipulate", poison, "-o", new],
         f"--exclude {poison} and --manipulate {poison} name the same forget set", {}),
        ("evaluate-oracle-excluded-and-manipulated", ["evaluate", work / "poisoned.safetensors", "--forget", poison,
                                                      "--oracle", both, "--json", never], excluded_and_manipulated, {}),
        ("apply-original-excluded-and-manipulated", ["apply", "-m", both, "-f", poison, "--method", "finetune", "-o",
                                                     new], excluded_and_manipulated, {}),
        ("tune-oracle-excluded-and-manipulated", [*tune_from(work / "poisoned.safetensors", poison), "--oracle", both],
         excluded_and_manipulated, {}),
        ("audit-retrained-excluded-and-manipulated", [*audit_of(poison, "poison-unlearned-*", "both-*")],
         excluded_and_manipulated, {}),
        ("audit-same-model-twice", audit_of(f, "unlearned-[0c]*", "oracle*"), "hold the same model (sha256", {}),
        ("audit-mixed-recipes", audit_of(f, "unlearned-[0o]*", "oracle*"),
         "lr 0.5 differs from", {}),
        ("audit-control-size-1e9", [*audit_of(f, "unlearned-[01]*", "oracle*"), "--control-size", "1000000000"],
         "--control-size 1000000000: a control sample can hold at most", {}),
        ("audit-mask-as-model", audit_of(f, "*mask.safetensors", "oracle*"), "is a mask file, not a checkpoint; give a "
                                                                            "checkpoint", {}),
        ("tune-allowance-nan", [*tune, "--allowance", "nan"], "--allowance: nan is out of range", {}),
        ("tune-allowance-negative", [*tune, "--allowance", "-1"], "--allowance: -1.0 is out of range", {}),
        ("tune-extend-negative", [*tune, "--extend", "-1"], "--extend: -1 is out of range", {}),
        ("tune-trigger-without-poison", [*tune, "--weight", "trigger=1"], "carries no poison", {}),
        ("tune-grid-of-10000", [*tune, "--grid", "lr=" + ",".join(f"{(i + 1) / 1000:g}" for i in range(100)),
                                "--grid", "epochs=" + ",".join(str(i + 1) for i in range(100))],
         "--grid: number of candidates 10,000 exceeds the limit of 1,000", {}),
        ("tune-grid-lr-negative", [*tune, "--grid", "lr=-1"], "--grid lr: -1.0 is out of range", {}),
        # messages that named the wrong cause
        ("seed-in-forget", [*forget_from(work / "forget-{seed}.json"), "-o", new], "{seed} is not templated here", {}),
        ("seed-in-exclude", [*train, "--exclude", work / "forget-{seed}.json", "-o", new], "{seed} is not templated "
                                                                                           "here", {}),
        ("arabic-indic-digits", [*forget_from(work / "arabic-digits.txt"), "-o", new],
         "is not an integer index; a text forget set is integers in ASCII digits", {}),
        ("header-beyond-limit", ["info", work / "huge-claimed-header.safetensors"],
         "its header claims 1,099,511,627,776 bytes, beyond the limit of 67,108,864 bytes", {}),
        ("limit-variable-fraction", ["info", o], "UNLEARN_MAX_TENSOR_FILE_BYTES='0.5': must be a whole number ≥ 1",
         {"env": {"UNLEARN_MAX_TENSOR_FILE_BYTES": "0.5"}}),
    ]
    return [(name, [str(a) for a in arguments], expected, extra) for name, arguments, expected, extra in cases]


def snapshot(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def outcomes(folder):
    before = snapshot(folder)
    requests = [{"id": name, "args": arguments, "stdin": extra.get("stdin"), "env": extra.get("env"), "timeout": 120}
                for name, arguments, _, extra in probes(folder)]
    # on the CPU: a CUDA context reserves more address space than the cap leaves
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run([sys.executable, str(HERE / "probe_runner.py"), "--headroom", str(2 * 1024**3)],
                           input=json.dumps(requests), capture_output=True, text=True, timeout=1200, env=environment)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout), before, snapshot(folder)


@pytest.mark.parametrize("name", [name for name, _, _, _ in probes(Path("."))])
def test_hostile_command_line(folder, outcomes, name):
    results, _, _ = outcomes
    expected = next(text for probe, _, text, _ in probes(folder) if probe == name)
    outcome = results[name]
    assert outcome["exception"] is None, outcome
    assert outcome["exit_code"] == 1, outcome
    assert outcome["stderr"].startswith("error: ") and outcome["stderr"].count("\n") == 1, outcome["stderr"]
    assert "Traceback" not in outcome["stderr"] and expected in outcome["stderr"], outcome["stderr"]
    assert outcome["stdout_bytes"] == 0


def test_probes_wrote_nothing_and_left_inputs_intact(outcomes):
    _, before, after = outcomes
    assert after == before


def test_probe_count():
    """The number of hostile command lines checked above (reported in the changelog)."""
    assert len(probes(Path("."))) >= 88


def test_a_closed_stdin_is_called_closed_not_a_terminal(tiny_run, tmp_path):
    """`unlearn apply --mask - … <&-`: Python starts without a stdin; the message says so, and nothing is written."""
    output = tmp_path / "never.safetensors"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run(
        [sys.executable, "-m", "unlearn_cli", "apply", "-m", str(tiny_run["original"]), "-f", str(tiny_run["forget"]),
         "--method", "finetune", "--mask", "-", "-o", str(output)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, env=environment,
        preexec_fn=lambda: os.close(0))
    assert child.returncode == 1, child.stderr
    assert child.stderr == "error: mask '-' means stdin, but stdin is closed; pipe the mask in or give a path\n"
    assert not output.exists()


# --- what the mistakes' refusals leave accepted ------------------------------------------------------------------

def test_a_json_list_is_a_forget_set_like_the_same_text_list(tmp_path):
    (tmp_path / "list.json").write_text("[5, 1, 3]")
    (tmp_path / "list.txt").write_text("1 3 5")
    as_json, as_text = read_forget_set(str(tmp_path / "list.json"), 10), read_forget_set(str(tmp_path / "list.txt"), 10)
    assert as_json.indices.tolist() == [1, 3, 5] and as_json.sha256 == as_text.sha256 and as_json.info is None


def test_a_limit_variable_takes_whole_numbers_with_an_exponent(monkeypatch):
    from unlearn_cli.limits import limit

    for text, value in (("4e9", 4_000_000_000), ("1000", 1000), ("99999999999999999999", 99999999999999999999)):
        monkeypatch.setenv("UNLEARN_MAX_PARAMETERS", text)
        assert limit("parameters") == value
    for text in ("0.5", "2.5e0", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("UNLEARN_MAX_PARAMETERS", text)
        with pytest.raises(UserError, match="must be a whole number ≥ 1"):
            limit("parameters")


def test_a_pool_of_one_recipe_is_audited_and_its_seeds_may_differ(folder):
    from unlearn_cli.lineage import recipe

    zero, one = (load_checkpoint(str(folder / f"unlearned-{seed}.safetensors")) for seed in (0, 1))
    other = load_checkpoint(str(folder / "unlearned-other-lr.safetensors"))
    assert zero.provenance.seed != one.provenance.seed and recipe(zero) == recipe(one) != recipe(other)


def test_train_takes_exclude_and_manipulate_of_different_forget_sets(folder, tmp_path):
    output = tmp_path / "model.safetensors"
    result = run_cli("train", *mlp_flags(width=32), "--exclude", folder / "forget.json", "--manipulate",
                     folder / "poison.json", "-o", output)
    assert result.exit_code == 0, result.output
    provenance = load_checkpoint(str(output)).provenance
    assert provenance.excluded_sha256 == read_forget_set(str(folder / "forget.json")).sha256
    assert provenance.manipulated_sha256 == read_forget_set(str(folder / "poison.json")).manipulation.sha256


# --- outputs: special files, modes, links ------------------------------------------------------------------------

def test_dev_null_is_written_in_place_not_replaced(tiny_run):
    result = run_cli("info", tiny_run["original"], "--json", "/dev/null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_output_is_written_in_place(tiny_run, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = run_cli("info", tiny_run["original"], "--json", fifo)
    received = reader.communicate(timeout=60)[0]
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(received)["arch"] == "mlp"


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tiny_run, tmp_path):
    previous = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.json"
        assert run_cli("info", tiny_run["original"], "--json", fresh).exit_code == 0
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o640
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        os.chmod(kept, 0o604)
        assert run_cli("info", tiny_run["original"], "--json", kept).exit_code == 0
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604 and json.loads(kept.read_text())["arch"] == "mlp"
    finally:
        os.umask(previous)


def test_an_output_link_is_followed_and_kept(tiny_run, tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("{}")
    os.symlink(target, link)
    assert run_cli("info", tiny_run["original"], "--json", link).exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["arch"] == "mlp"


def test_text_may_go_to_a_terminal_binary_may_not(monkeypatch):
    from unlearn_cli import streams

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(streams.sys, "stdout", Terminal())
    streams.check_writable("-", "--json", binary=False)
    with pytest.raises(UserError, match="refusing to write binary data to a terminal"):
        streams.check_writable("-", "--output")


def test_info_json_is_typed(tiny_run):
    document = json.loads(run_cli("info", tiny_run["original"], "--json", "-").stdout)
    assert document["arch_kwargs"] == {"width": 32} and document["input_shape"] == [1, 8, 8]
    assert document["num_classes"] == 10 and document["seed"] == 0 and isinstance(document["config"], dict)


def test_text_from_files_is_shown_as_written_not_read_as_terminal_markup(tiny_run, tmp_path):
    """A metadata value, a tensor name or a file name with rich markup in it (`[/]` closes no open tag) is printed
    as it is written; `info`, `mask info` and `mask compare` used to end in an internal error (MarkupError)."""
    checkpoint = forge(tiny_run["original"], tmp_path / "[b]m.safetensors", notes="[/]x[bold]")
    result = run_cli("info", checkpoint)
    assert result.exit_code == 0, result.output
    assert "[b]m.safetensors" in result.stderr and "[/]x[bold]" in result.stderr
    mask = tmp_path / "mask.safetensors"
    assert run_cli("localize", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--budget", "0.3", "-q",
                   "-o", mask).exit_code == 0
    tensors, meta = tensors_and_meta(mask)
    hostile = tmp_path / "[b]mask.safetensors"
    hostile.write_bytes(dump_safetensors({f"[/]{name}": tensor for name, tensor in tensors.items()}, meta))
    result = run_cli("mask", "info", hostile)
    assert result.exit_code == 0, result.output
    assert "[b]mask.safetensors: strategy del" in result.stderr
    assert all(f"[/]{name}" in result.stderr for name in tensors), result.stderr
    result = run_cli("mask", "compare", hostile, hostile)
    assert result.exit_code == 0 and "[b]mask.safetensors vs " in result.stderr, result.output


# --- overrides are recorded ---------------------------------------------------------------------------------------

def test_a_mask_for_another_forget_set_runs_with_allow_mismatch_and_is_recorded(folder, tmp_path):
    output = tmp_path / "out.safetensors"
    result = run_cli("apply", "-m", folder / "original.safetensors", "-f", folder / "forget.json", "--method", "finetune",
                     "--mask", folder / "other-forget-mask.safetensors", "--max-steps", "2", "--allow-mismatch", "-q",
                     "-o", output)
    assert result.exit_code == 0, result.output
    provenance = load_checkpoint(str(output)).provenance
    assert provenance.mask_forget_sha256 == read_forget_set(str(folder / "other-forget.json")).sha256
    assert provenance.overrides == ["--allow-mismatch"]


def test_evaluate_records_allow_mismatch_when_it_let_an_oracle_through(folder, tmp_path):
    output = tmp_path / "r.json"
    result = run_cli("evaluate", folder / "original.safetensors", "--forget", folder / "other-forget.json",
                     "--oracle", folder / "oracle.safetensors", "--allow-mismatch", "-q", "--json", output)
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text())["results"][0]["allow_mismatch"] is True


def test_an_internal_error_is_one_line_with_the_way_to_see_more(monkeypatch, tiny_run):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a defect")

    monkeypatch.setattr("unlearn_cli.io.checkpoint.read_checkpoint_file", broken)  # `info` imports it when it runs
    result = run_cli("info", tiny_run["original"])
    assert result.exit_code == 1
    assert result.stderr == ("error: internal error (ZeroDivisionError: a defect); rerun with --debug for the "
                             "traceback\n")


# --- generated hostile inputs -------------------------------------------------------------------------------------

KWARG_VALUES = st.one_of(st.integers(min_value=-5, max_value=10**15), st.floats(allow_nan=True), st.booleans(),
                         st.text(max_size=4), st.none(), st.lists(st.integers(), max_size=2))


@FAST
@given(st.dictionaries(st.sampled_from(["width", "depth", "colour"]), KWARG_VALUES, max_size=3))
def test_generated_arch_kwargs_are_refused_or_load_exactly(tiny_run, kwargs):
    tensors, meta = tensors_and_meta(tiny_run["original"])
    data = dump_safetensors(tensors, {**meta, "arch_kwargs": json.dumps(kwargs)})
    try:
        checkpoint = load_checkpoint("forged.safetensors", data=data)
    except UserError as error:
        assert str(error).startswith("forged.safetensors: ") and "\n" not in str(error)
    else:
        assert sum(p.numel() for p in checkpoint.model.parameters()) == sum(t.numel() for t in tensors.values())


YAML_TEXT = st.one_of(
    st.text(alphabet="ab:&*[]{}-, \n!'\"1.", max_size=60),
    st.dictionaries(st.sampled_from(["epochs", "lr", "seed", "arch_options", "batch_size"]), KWARG_VALUES,
                    max_size=3).map(yaml.safe_dump),
)


@FAST
@given(YAML_TEXT)
def test_generated_yaml_is_refused_or_valid(tmp_path, text):
    path = tmp_path / "generated.yaml"
    path.write_text(text)
    try:
        config = resolve_config(TrainConfig, path, {})
    except UserError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        assert config.epochs >= 1 and config.batch_size >= 1 and 0 <= config.seed < 2**63


@FAST
@given(st.integers(min_value=0, max_value=2**62), st.sampled_from(["<i8", "<i4", "<f8", "|u1", "|b1", "<i2"]),
       st.integers(min_value=0, max_value=64))
def test_generated_npy_headers_are_checked_before_reading(tmp_path, claimed, dtype, body):
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': ({claimed},), }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    path = tmp_path / "generated.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(body))
    try:
        forget = read_forget_set(str(path), num_train=10**9)
    except UserError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        assert len(forget.indices) == claimed and torch.all(forget.indices >= 0)
