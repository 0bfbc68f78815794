"""SHA-256 helpers: file hashes for provenance, index hashes for forget sets."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_indices(indices: torch.Tensor) -> str:
    """Hash of a sorted index list, as little-endian int64: the identity of a forget set."""
    import torch  # here: a file's hash needs no torch

    return hashlib.sha256(indices.to(torch.int64).contiguous().numpy().astype("<i8").tobytes()).hexdigest()
