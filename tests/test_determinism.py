"""On CPU the same command with the same seed writes byte-identical files (split, train, localize, apply).

Checkpoints carry the wall time; UNLEARN_REPRODUCIBLE=1 leaves it out so that equal runs give equal bytes.
Without it, two runs differ in `wall_time_s` alone.
"""

from __future__ import annotations

from safetensors import safe_open

from conftest import run_cli
from presets import mlp_flags

TINY = mlp_flags(width=16, epochs=2)


def pipeline(folder):
    """Every file-writing command once, into `folder`; returns the files in order."""
    f = lambda name: str(folder / name)  # noqa: E731
    steps = [
        ("split", "--dataset", "digits", "--kind", "iid", "--fraction", "0.05", "--seed", "3", "-q", "-o", f("forget.json")),
        ("train", *TINY, "--seed", "3", "-o", f("original.safetensors")),
        ("localize", "--model", f("original.safetensors"), "--forget", f("forget.json"), "--strategy", "del",
         "--budget", "0.3", "-q", "-o", f("mask.safetensors")),
        ("apply", "--model", f("original.safetensors"), "--forget", f("forget.json"), "--method", "rft",
         "--mask", f("mask.safetensors"), "--epochs", "1", "--seed", "3", "-q", "-o", f("unlearned.safetensors")),
    ]
    for step in steps:
        result = run_cli(*step)
        assert result.exit_code == 0, result.output
    return ["forget.json", "original.safetensors", "mask.safetensors", "unlearned.safetensors"]


def test_same_seed_same_bytes_for_every_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_REPRODUCIBLE", "1")
    names = pipeline(tmp_path)  # paths are part of the recorded configuration: rerun in the same folder
    first = {name: (tmp_path / name).read_bytes() for name in names}
    for name in names:
        (tmp_path / name).unlink()
    pipeline(tmp_path)
    for name in names:
        assert (tmp_path / name).read_bytes() == first[name], name
    with safe_open(str(tmp_path / "unlearned.safetensors"), "pt") as file:
        assert file.metadata()["wall_time_s"] == "unrecorded"


def test_without_the_switch_only_the_wall_time_differs(tmp_path, monkeypatch):
    """(Downstream files then differ in the parent's hash too, since the parent's bytes differ.)"""
    monkeypatch.delenv("UNLEARN_REPRODUCIBLE", raising=False)
    metas, tensors = [], []
    for _ in range(2):
        assert run_cli("train", *TINY, "--seed", "3", "-o", tmp_path / "m.safetensors").exit_code == 0
        with safe_open(str(tmp_path / "m.safetensors"), "pt") as file:
            metas.append(dict(file.metadata()))
            tensors.append({key: file.get_tensor(key) for key in file.keys()})
    assert float(metas[0]["wall_time_s"]) > 0
    assert {k: v for k, v in metas[0].items() if k != "wall_time_s"} == {k: v for k, v in metas[1].items() if k != "wall_time_s"}
    assert all(tensors[0][key].equal(tensors[1][key]) for key in tensors[0])
