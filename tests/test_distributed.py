"""Data-parallel `train` and `apply` under torchrun (two CPU processes, gloo), shards, and the fast-path flags.

The torchrun runs are real subprocesses (`python -m torch.distributed.run --standalone --nproc-per-node 2
-m unlearn_cli …`); their results are compared with a one-process run of the same global batch.
The two are equal up to float rounding, not bit for bit: DDP sums the two ranks' gradients (each the
mean over 50 examples) and halves the sum, where one process averages 100 per-example gradients in
one reduction — a different summation order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.distributed import Shard, confirm_replicas, data_parallel
from unlearn_cli.engine import FastPath
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint

# 1,000 digits (an even count, so no example is dropped when dealt to 2 ranks), global batch 100.
TINY = (*mlp_flags(width=16, epochs=2, quiet=False), "--dataset-option", "train_subset=1000", "--batch-size", "100",
        "--device", "cpu")
TOLERANCE = 1e-5  # measured: about 3e-8 after 20 steps


def torchrun(folder, *arguments) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m unlearn_cli ARGS` in `folder`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "unlearn_cli", *map(str, arguments)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, env=environment)


def largest_difference(first, second) -> float:
    a, b = load_checkpoint(first).model.state_dict(), load_checkpoint(second).model.state_dict()
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


@pytest.mark.slow
def test_torchrun_train_matches_one_process(tmp_path):
    result = torchrun(tmp_path, "train", *TINY, "-o", "ddp.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("-> ddp.safetensors") == 1  # only rank 0 reports
    assert sorted(os.listdir(tmp_path)) == ["ddp.safetensors"]  # written once, no temporary file left
    single = run_cli("train", *TINY, "--quiet", "-o", tmp_path / "single.safetensors")
    assert single.exit_code == 0, single.output

    checkpoint = load_checkpoint(tmp_path / "ddp.safetensors")
    assert checkpoint.meta["world_size"] == "2"
    assert checkpoint.config["batch_size"] == 100  # the global batch is what is recorded
    # the training-time confidence: each rank recorded its shard, the ranks' records were summed
    alone = load_checkpoint(tmp_path / "single.safetensors").training_confidence
    assert not checkpoint.training_confidence.isnan().any()
    assert float((checkpoint.training_confidence - alone).abs().max()) < TOLERANCE
    assert largest_difference(tmp_path / "ddp.safetensors", tmp_path / "single.safetensors") < TOLERANCE


@pytest.mark.slow
def test_torchrun_deals_a_pools_seeds_out_over_the_processes(tmp_path):
    """`--seeds` under torchrun: process r takes every second seed and writes its files; the union is exactly the
    pool one process builds (each seed runs alone either way, so the weights are bit-identical)."""
    pool, single = tmp_path / "pool", tmp_path / "single"
    pool.mkdir(), single.mkdir()
    result = torchrun(pool, "train", *TINY, "--seeds", "0-2", "-o", "original-{seed}.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (0, 1, 2):  # rank 0 reports seeds 0 and 2, rank 1 seed 1: each file once
        assert result.stderr.count(f"-> original-{seed}.safetensors") == 1
    one = run_cli("train", *TINY, "--seeds", "0-2", "--quiet", "-o", single / "original-{seed}.safetensors")
    assert one.exit_code == 0, one.output
    forget = tmp_path / "forget.json"
    assert run_cli("split", "--dataset", "digits", "--dataset-option", "train_subset=1000", "--fraction", "0.1", "-q",
                   "-o", forget).exit_code == 0
    finetune = ("apply", "--seeds", "0-2", "-m", "original-{seed}.safetensors", "-f", forget, "--method", "finetune",
                "--epochs", "1", "--batch-size", "100", "--device", "cpu")
    result = torchrun(pool, *finetune, "-o", "finetune-{seed}.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    os.chdir(single)
    try:
        assert run_cli(*finetune, "--quiet", "-o", "finetune-{seed}.safetensors").exit_code == 0
    finally:
        os.chdir(tmp_path)
    assert sorted(os.listdir(pool)) == sorted(os.listdir(single)) == sorted(
        f"{name}-{seed}.safetensors" for name in ("original", "finetune") for seed in (0, 1, 2))
    for name in os.listdir(pool):
        dealt, alone = load_checkpoint(pool / name), load_checkpoint(single / name)
        assert "world_size" not in dealt.meta  # trained by one process, not data-parallel
        assert dealt.config == alone.config and dealt.provenance.seed == alone.provenance.seed
        assert largest_difference(pool / name, single / name) == 0.0
    # with --stacked each process stacks its share (seeds 0 and 2 on rank 0): the same models, float32 rounding apart
    result = torchrun(pool, "train", *TINY, "--seeds", "0-2", "--stacked", "-o", "stacked-{seed}.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train mlp ×2 (stacked)" in result.stderr and "train mlp ×1 (stacked)" in result.stderr
    for seed in (0, 1, 2):
        stacked = load_checkpoint(pool / f"stacked-{seed}.safetensors")
        assert stacked.config["stacked"] is True and stacked.provenance.seed == seed
        assert largest_difference(pool / f"stacked-{seed}.safetensors", single / f"original-{seed}.safetensors") < TOLERANCE
    result = torchrun(pool, *finetune, "--stacked", "-o", "finetune-stacked-{seed}.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finetune ×2 (stacked)" in result.stderr and "finetune ×1 (stacked)" in result.stderr
    for seed in (0, 1, 2):
        stacked = load_checkpoint(pool / f"finetune-stacked-{seed}.safetensors")
        assert stacked.config["stacked"] is True and stacked.provenance.seed == seed
        assert largest_difference(pool / f"finetune-stacked-{seed}.safetensors",
                                  single / f"finetune-{seed}.safetensors") < TOLERANCE


@pytest.mark.slow
def test_torchrun_apply_rft_matches_one_process(tmp_path):
    parent, forget, mask = tmp_path / "parent.safetensors", tmp_path / "forget.json", tmp_path / "mask.safetensors"
    for arguments in (
        ("train", *TINY, "--quiet", "-o", parent),
        # 100 of the 1,000 forgotten: the retain set (900) splits evenly over 2 ranks
        ("split", "--dataset", "digits", "--dataset-option", "train_subset=1000", "--kind", "iid", "--fraction", "0.1",
         "-q", "-o", forget),
        ("localize", "-m", parent, "-f", forget, "--strategy", "del", "--budget", "0.3", "--device", "cpu", "-q",
         "-o", mask),
    ):
        prepared = run_cli(*arguments)
        assert prepared.exit_code == 0, prepared.output
    rft = ("apply", "-m", parent, "-f", forget, "--mask", mask, "--method", "rft", "--epochs", "2",
           "--batch-size", "100", "--device", "cpu")
    result = torchrun(tmp_path, *rft, "-o", "ddp.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("-> ddp.safetensors") == 1
    single = run_cli(*rft, "--quiet", "-o", tmp_path / "single.safetensors")
    assert single.exit_code == 0, single.output

    assert sorted(os.listdir(tmp_path)) == sorted(["parent.safetensors", "forget.json", "mask.safetensors",
                                                   "ddp.safetensors", "single.safetensors"])
    assert largest_difference(tmp_path / "ddp.safetensors", tmp_path / "single.safetensors") < TOLERANCE
    # the mask holds on the data-parallel result too: entries outside it are bit-identical to the parent
    from unlearn_cli.io.mask import read_mask
    from unlearn_cli.models import classifier_head_names

    parent_model = load_checkpoint(parent).model
    selection = read_mask(str(mask), parent_model).mask
    head = set(classifier_head_names(parent_model))
    before = dict(parent_model.named_parameters())
    for name, after in load_checkpoint(tmp_path / "ddp.safetensors").model.named_parameters():
        if name not in head:
            assert torch.equal(after[~selection[name]], before[name][~selection[name]]), name


def _check_replicas(rank: int, folder, nudge: bool) -> None:
    """One of two forked ranks: same seeded model, own BatchNorm statistics, rank 1 optionally nudged."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
        with torch.no_grad():
            model[1].running_mean.fill_(rank)
            if nudge and rank == 1:
                model[0].weight[0, 0] += 1e-3
        try:
            confirm_replicas(model)
            outcome = f"same; running mean {model[1].running_mean.tolist()}"
        except UserError as error:
            outcome = str(error)
        (folder / f"rank{rank}.txt").write_text(outcome)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("nudge", [False, True])
def test_replicas_are_checked_before_anything_is_written(tmp_path, nudge):
    torch.multiprocessing.start_processes(_check_replicas, args=(tmp_path, nudge), nprocs=2, start_method="fork")
    outcomes = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    if nudge:  # every rank fails, so rank 0 writes nothing
        assert outcomes == ["the 2 processes ended with different weights (largest difference 0.001); no output was "
                            "written — run without torchrun to rule out a non-deterministic kernel"] * 2
    else:  # parameters agree; BatchNorm statistics are rank 0's everywhere
        assert outcomes == ["same; running mean [0.0, 0.0]"] * 2


def _fail_on_rank_one(rank: int, folder, port: int) -> None:
    """One of two forked torchrun-like ranks: rank 1 fails, rank 0 waits for it in a collective."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        with data_parallel(torch.device("cpu")) as (_, shard):
            if shard.rank == 1:
                raise KeyError("a failure on rank 1")
            dist.all_reduce(torch.ones(1))
        outcome = "finished"
    except (UserError, KeyError) as error:
        outcome = str(error)
    (folder / f"rank{rank}.txt").write_text(outcome)


def test_a_failed_rank_ends_the_others_with_a_one_line_error(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.start_processes(_fail_on_rank_one, args=(tmp_path, port), nprocs=2, start_method="fork")
    assert (tmp_path / "rank1.txt").read_text() == "'a failure on rank 1'"
    assert (tmp_path / "rank0.txt").read_text() == ("rank 0: another process of the group failed (see its error "
                                                   "above); no output was written")


@pytest.mark.parametrize("count,world,batch_size", [(1000, 2, 100), (1437, 2, 128), (131, 4, 64), (7, 1, 3), (5, 4, 4)])
def test_shards_rebuild_the_one_process_batches(count, world, batch_size):
    order = torch.randperm(count, generator=torch.Generator().manual_seed(count))
    shards = [Shard(rank, world) for rank in range(world)]
    local_batches = [list(shard.take(order).split(shard.local_batch_size(batch_size))) for shard in shards]
    usable = order[: count - count % world]  # at most world - 1 examples dropped
    expected = list(usable.split(batch_size))
    for shard, batches in zip(shards, local_batches):
        assert len(batches) == len(expected) == shard.batches_per_epoch(count, batch_size)
    for index, batch in enumerate(expected):
        union = torch.cat([batches[index] for batches in local_batches])
        assert sorted(union.tolist()) == sorted(batch.tolist())
        assert len({len(batches[index]) for batches in local_batches}) == 1  # equal sizes: the mean of means is the mean
    assert sorted(torch.cat([shard.take(order) for shard in shards]).tolist()) == sorted(usable.tolist())


def test_a_batch_that_does_not_divide_over_the_ranks_is_refused():
    with pytest.raises(UserError, match=r"--batch-size 130 is the global batch .* use a multiple of 4"):
        Shard(1, 4).local_batch_size(130)


def test_fast_path_defaults_follow_the_device():
    assert FastPath.for_device(torch.device("cpu")) == FastPath(amp=False, channels_last=False, compile=False)
    assert FastPath.for_device(torch.device("cuda")) == FastPath(amp=True, channels_last=True, compile=False)
    assert FastPath.for_device(torch.device("cuda"), amp=False, compile=True) == FastPath(False, True, True)


def test_amp_and_channels_last_train_on_cpu_and_are_recorded(tmp_path):
    cnn = ("train", "--dataset", "digits", "--dataset-option", "train_subset=256", "--arch", "cnn",
           "--arch-option", "width=4", "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--quiet")
    fast = run_cli(*cnn, "--amp", "--channels-last", "-o", tmp_path / "fast.safetensors")
    plain = run_cli(*cnn, "-o", tmp_path / "plain.safetensors")
    assert fast.exit_code == 0 and plain.exit_code == 0, fast.output + plain.output
    fast_config = load_checkpoint(tmp_path / "fast.safetensors").config
    plain_config = load_checkpoint(tmp_path / "plain.safetensors").config
    assert (fast_config["amp"], fast_config["channels_last"], fast_config["compile"]) == (True, True, False)
    assert (plain_config["amp"], plain_config["channels_last"], plain_config["compile"]) == (False, False, False)
    # bf16 forward passes change the rounding, not the recipe: both trained, and differently
    assert 0 < largest_difference(tmp_path / "fast.safetensors", tmp_path / "plain.safetensors")


def test_channels_last_alone_gives_the_plain_result_up_to_rounding(tmp_path):
    cnn = ("train", "--dataset", "digits", "--dataset-option", "train_subset=256", "--arch", "cnn",
           "--arch-option", "width=4", "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--quiet")
    assert run_cli(*cnn, "--channels-last", "-o", tmp_path / "nhwc.safetensors").exit_code == 0
    assert run_cli(*cnn, "-o", tmp_path / "nchw.safetensors").exit_code == 0
    assert largest_difference(tmp_path / "nhwc.safetensors", tmp_path / "nchw.safetensors") < 1e-4


def test_localize_runs_on_rank_zero_only(tmp_path, monkeypatch):
    arguments = ("localize", "-m", tmp_path / "missing.safetensors", "-f", tmp_path / "missing.json",
                 "--budget", "0.3", "--device", "cpu", "-q", "-o", tmp_path / "mask.safetensors")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert run_cli(*arguments).exit_code == 0  # rank 1 leaves the work, and its errors, to rank 0
    monkeypatch.setenv("RANK", "0")
    result = run_cli(*arguments)
    assert result.exit_code == 1 and "missing.safetensors" in result.output
    assert not (tmp_path / "mask.safetensors").exists()
