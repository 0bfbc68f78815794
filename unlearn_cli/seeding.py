"""Seeds of the random streams a run derives from its `--seed`: one rule, so that every seed 0 … 2⁶³ − 1 works.

A stream's seed is `seed × stride + offset` (an epoch's shuffle: stride 100,003, offset the epoch; the k-th
redraw: offset k), as it always was, whenever that lies in 0 … 2⁶³ − 1: the draws of every seed in use keep
their values. Only where it would leave int64 (seeds above about 9.2·10¹³ for an epoch's shuffle, the last
seeds before 2⁶³ for an offset) is it replaced by a hash of (seed, stride, offset) reduced into 0 … 2⁶³ − 1,
which every generator (torch, numpy's `% 2**32`, Python's) accepts and other streams do not share.

Usage:
    torch.Generator().manual_seed(epoch_seed(seed, epoch))    # the shuffle of an epoch
    draw_forget_indices(..., derive_seed(seed, k))            # the k-th stream after `seed`
"""

from __future__ import annotations

import hashlib

from unlearn_cli.limits import INT64_MAX

EPOCH_STRIDE = 100_003  # epochs stay below it (BOUNDS: epochs ≤ 100,000), so (seed, epoch) pairs never share a seed


def derive_seed(seed: int, offset: int = 0, stride: int = 1) -> int:
    """`seed * stride + offset` when it lies in 0 … 2⁶³ − 1; else a hash of the three reduced into that range."""
    value = seed * stride + offset
    if 0 <= value <= INT64_MAX:
        return value
    digest = hashlib.blake2b(f"{seed},{stride},{offset}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & INT64_MAX


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s shuffle in a run seeded with `seed`."""
    return derive_seed(seed, epoch, EPOCH_STRIDE)
