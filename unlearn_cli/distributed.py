"""Data-parallel training under `torchrun`: the process group, data shards, DDP, and the replica check.

Launched by `torchrun --nproc-per-node N -m unlearn_cli train|apply …`, every process runs the same
command. `data_parallel` joins the process group torchrun describes in its environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL on CUDA, gloo on CPU. Inside it, training is
data-parallel: each rank takes its `Shard` of every shuffled epoch, `engine.run_loop` wraps the model in
DistributedDataParallel (gradients averaged over ranks), and `confirm_replicas` checks that every rank
ends with the same weights before rank 0 alone writes the output. Outside torchrun nothing changes:
one process, `Shard()` = the whole data.

A pool of models (`--seeds`) is spread the other way: `deal` gives each process every W-th seed and
`on_own` runs them without a process group, each process writing its own files.

Usage:
    with data_parallel(select_device("auto")) as (device, shard):
        train_classifier(model, data, None, settings, batch_size=128, seed=0, device=device)  # 128 = global batch
        confirm_replicas(model)
        if shard.is_main: write_output(path, checkpoint_bytes(model, meta))
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from unlearn_cli.errors import UserError, flag

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


@dataclass(frozen=True)
class Shard:
    """This process's part of the data: rank `rank` of `world` processes.

    A shuffled epoch order of N examples is truncated to a multiple of `world` (dropping at most
    world − 1 examples, different ones each epoch since the order is reshuffled) and dealt out as
    order[rank::world], so every rank holds N // world examples and runs the same number of batches.
    Batch sizes are global: each rank takes batch_size / world examples of every batch, and the union
    of the ranks' j-th batches is exactly the j-th batch a single process would take of the truncated order.
    """

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's indices of an epoch order (the whole order when world = 1)."""
        if self.world == 1:
            return order
        usable = len(order) - len(order) % self.world
        return order[:usable][self.rank :: self.world]

    def local_batch_size(self, batch_size: int) -> int:
        """Examples per batch on this rank for a global `batch_size`."""
        if batch_size % self.world:
            raise UserError(f"{flag('batch_size')} {batch_size} is the global batch and must divide evenly over the "
                            f"{self.world} processes; use a multiple of {self.world}")
        return batch_size // self.world

    def batches_per_epoch(self, count: int, batch_size: int) -> int:
        """Batches each rank runs per epoch over `count` examples (ceil(count / batch_size) for one process)."""
        return -(-(count // self.world) // self.local_batch_size(batch_size))


def launch_environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's environment; None when not launched with several processes."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun") from None
    return (rank, world, local_rank) if world > 1 else None


def is_main_process() -> bool:
    """Rank 0, or the only process; readable before the process group exists."""
    environment = launch_environment()
    return environment is None or environment[0] == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def current_shard() -> Shard:
    """The shard of this process in the current process group (the whole data outside one)."""
    return Shard(dist.get_rank(), dist.get_world_size()) if active() else Shard()


@contextlib.contextmanager
def data_parallel(device: torch.device):
    """Join torchrun's process group for the duration; yields (this rank's device, its shard).

    On CUDA each process takes the GPU numbered by its LOCAL_RANK. Without torchrun it yields
    (device, Shard()) and does nothing else.
    """
    environment = launch_environment()
    if environment is None:
        yield device, Shard()
        return
    rank, world, local_rank = environment
    backend = BACKENDS.get(device.type)
    if backend is None:
        raise UserError(f"--device {device.type}: torchrun runs on cuda (NCCL) or cpu (gloo); choose one of them")
    device = _local_device(device, local_rank)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world)
    except (RuntimeError, ValueError) as error:
        raise UserError(f"cannot join the torchrun process group ({str(error).splitlines()[0]}); "
                        f"check MASTER_ADDR/MASTER_PORT and that every node runs the same command") from None
    try:
        yield device, Shard(rank, world)
        dist.barrier()  # leave together: a rank that tears gloo down while rank 0 still writes can abort rank 0's exit
    except RuntimeError as error:
        if not peer_failed(error):
            raise
        raise UserError(f"rank {rank}: another process of the group failed (see its error above); "
                        f"no output was written") from None
    finally:
        # DistributedDataParallel wrappers sit in reference cycles and outlive the loop that made them; free them
        # (and the reducer that holds the group) now, while the group and the interpreter are alive, rather than
        # at interpreter exit, where a gloo object torn down late can abort the process after its work is done
        gc.collect()
        dist.destroy_process_group()


def _local_device(device: torch.device, local_rank: int) -> torch.device:
    """On CUDA, the GPU numbered by LOCAL_RANK (made current); any other device as it is."""
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                        f"lower --nproc-per-node")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def deal(items: list) -> list:
    """Under torchrun, this process's share of `items`: rank r of W takes items r, r + W, r + 2W, …; all of them
    outside torchrun."""
    environment = launch_environment()
    return items if environment is None else items[environment[0] :: environment[1]]


@contextlib.contextmanager
def on_own(device: torch.device):
    """For work dealt out over torchrun's processes (a pool's seeds, `deal`): no process group, each process on
    its own GPU (LOCAL_RANK) with the whole data; yields (device, Shard()). Outside torchrun, (device, Shard())."""
    environment = launch_environment()
    yield (device if environment is None else _local_device(device, environment[2])), Shard()


PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")  # gloo's wording


def peer_failed(error: RuntimeError) -> bool:
    """Whether a collective failed because another rank went away (NCCL says so with DistError)."""
    return isinstance(error, dist.DistError) or any(text in str(error) for text in PEER_FAILURES)


def wrap_for_training(model: nn.Module) -> nn.Module:
    """`model` in DistributedDataParallel inside a process group (gradients averaged over ranks), else itself.

    DDP broadcasts rank 0's parameters and buffers on construction, so every rank starts from the same
    weights. Only parameters that require gradients are synchronized: wrap after freezing. The wrapper
    is for the forward pass only; parameter names (masks, checkpoints) come from the unwrapped `model`.
    """
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every rank of the process group, in place (a collective); itself outside one."""
    if active():
        dist.all_reduce(tensor)
    return tensor


@torch.no_grad()
def confirm_replicas(model: nn.Module) -> None:
    """Check that every rank holds the same parameters; take buffers (BatchNorm statistics) from rank 0.

    Raises UserError naming the largest difference when the replicas disagree. Being a collective, it
    is also the point where all ranks agree to finish: a rank that failed earlier makes it fail here (or
    torchrun ends the group), so rank 0 writes only after every rank got this far. A no-op outside a
    process group.
    """
    if not active():
        return
    for buffer in model.buffers():  # each rank updated running statistics from its own shard
        dist.broadcast(buffer, src=0)
    flat = torch.cat([parameter.detach().reshape(-1).float() for parameter in model.parameters()])
    highest, lowest = flat.clone(), flat.clone()
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    spread = float((highest - lowest).max()) if len(flat) else 0.0
    if spread != 0.0:
        raise UserError(f"the {dist.get_world_size()} processes ended with different weights (largest difference "
                        f"{spread:.3g}); no output was written — run without torchrun to rule out a "
                        f"non-deterministic kernel")


def rank_zero_only(command):
    """Run `command` on rank 0 only; other torchrun ranks return at once (commands that are not data-parallel).

    `localize` and `evaluate` are cheap next to training; under torchrun rank 0 does the whole job and
    writes the output once, the other processes exit with status 0.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if not is_main_process():
            return None
        return command(*args, **kwargs)

    return wrapper
