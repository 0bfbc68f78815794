"""ViT for small datasets (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets"):
shifted-patch tokenization (SPT) and locality self-attention (LSA: learnable temperature and
diagonal masking). Paper's SVHN setting: dim 512, depth 4, heads 8, MLP 1536, patch 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unlearn_cli.models import MODELS


class ShiftedPatchTokenizer(nn.Module):
    """Concatenate the image with its four diagonal half-patch shifts, cut patches, normalize, project."""

    def __init__(self, channels: int, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        patch_features = 5 * channels * patch * patch
        self.norm = nn.LayerNorm(patch_features)
        self.project = nn.Linear(patch_features, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, N, dim]
        s = self.patch // 2
        shifts = [F.pad(images, pad) for pad in ((s, -s, s, -s), (-s, s, s, -s), (s, -s, -s, s), (-s, s, -s, s))]
        stacked = torch.cat([images, *shifts], dim=1)
        patches = F.unfold(stacked, kernel_size=self.patch, stride=self.patch).transpose(1, 2)
        return self.project(self.norm(patches))


class LocalitySelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.tensor(dim_head**-0.5).log())
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, N, dim]
        batch, count, _ = tokens.shape
        q, k, v = self.qkv(tokens).reshape(batch, count, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * self.temperature.exp()
        diagonal = torch.eye(count, dtype=torch.bool, device=tokens.device)
        attention = scores.masked_fill(diagonal, torch.finfo(scores.dtype).min).softmax(dim=-1)
        return self.out((attention @ v).transpose(1, 2).reshape(batch, count, -1))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = LocalitySelfAttention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attention(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


class SmallViT(nn.Module):
    def __init__(self, num_classes: int, input_shape, dim: int, depth: int, heads: int, mlp_dim: int, patch: int,
                 dim_head: int):
        super().__init__()
        channels, height, width = input_shape
        if height % patch or width % patch:
            raise ValueError(f"image size {height}×{width} is not a multiple of patch {patch}")
        self.tokenizer = ShiftedPatchTokenizer(channels, patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, (height // patch) * (width // patch) + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, dim_head, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(images)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.position
        return self.head(self.norm(self.blocks(tokens))[:, 0])


@MODELS.register("vit")
def vit(num_classes: int, input_shape: tuple[int, int, int], dim: int = 512, depth: int = 4, heads: int = 8,
        mlp_dim: int = 1536, patch: int = 8, dim_head: int = 64) -> nn.Module:
    """ViT with shifted-patch tokenization and locality self-attention (Lee et al. 2021)."""
    return SmallViT(num_classes, input_shape, dim, depth, heads, mlp_dim, patch, dim_head)
