"""A small vision transformer (the zoo's ``shapes_vit``): conv patch embedding, class token, pre-norm blocks."""

from __future__ import annotations

import torch
from torch import nn

from ._base import DEFAULT_SEED, finish, register, seeded

__all__ = ["SmallViT"]


class ViTBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + fc2(gelu(fc1(norm2(x))))``."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


@register("small_vit")
class SmallViT(nn.Module):
    """``patch`` (Conv2d, kernel = stride = `patch`), a class token and learned positions, ``blocks`` (`depth`
    pre-norm blocks of width `dim`), ``norm`` and ``head`` on the class token. ``in_size / patch`` patches per side.
    ``stem > 0``: early convolutions before the patch embedding (Xiao et al. 2021: small ViTs train far better with
    them): conv 3x3 (`stem` channels), ReLU, conv 3x3 (2 `stem`), ReLU, max-pool 2, conv 3x3, ReLU, max-pool 2; the
    patch embedding then takes ``patch / 4`` pixels of that quarter-resolution map (the same patch grid). ``pool="mean"``: no class
    token; the head reads the mean of the patch tokens after ``norm``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 5, in_size: int = 64, patch: int = 8,
                 dim: int = 48, depth: int = 4, heads: int = 4, mlp: int = 96, stem: int = 0, pool: str = "cls", *,
                 seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("in_size", in_size),
                        ("patch", patch), ("dim", dim), ("depth", depth), ("heads", heads), ("mlp", mlp)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if not isinstance(stem, int) or isinstance(stem, bool) or stem < 0:
            raise ValueError(f"stem must be an integer >= 0, got {stem!r}.")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}.")
        if in_size % patch or dim % heads:
            raise ValueError(f"in_size ({in_size}) must be a multiple of patch ({patch}) and dim ({dim}) of heads "
                             f"({heads}).")
        tokens = (in_size // patch) ** 2 + (pool == "cls")
        self.pool = pool
        with seeded(seed):
            if stem and patch % 4:
                raise ValueError(f"with a stem, patch ({patch}) must be a multiple of 4.")
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem, 3, padding=1), nn.ReLU(), nn.Conv2d(stem, 2 * stem, 3, padding=1),
                nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2 * stem, 2 * stem, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2)) if stem else nn.Identity()
            k = patch // 4 if stem else patch
            self.patch = nn.Conv2d(2 * stem if stem else in_channels, dim, k, stride=k)
            self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
            self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
            self.blocks = nn.Sequential(*[ViTBlock(dim, heads, mlp) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        finish(self, {"name": "small_vit", "in_channels": in_channels, "num_classes": num_classes,
                      "in_size": in_size, "patch": patch, "dim": dim, "depth": depth, "heads": heads, "mlp": mlp,
                      "stem": stem, "pool": pool, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(self.stem(x)).flatten(2).transpose(1, 2)
        if self.cls is not None:
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        t = self.norm(self.blocks(t + self.pos))
        return self.head(t[:, 0] if self.cls is not None else t.mean(1))
