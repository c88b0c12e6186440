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
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 5, in_size: int = 64, patch: int = 8,
                 dim: int = 48, depth: int = 4, heads: int = 4, mlp: int = 96, *,
                 seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("in_size", in_size),
                        ("patch", patch), ("dim", dim), ("depth", depth), ("heads", heads), ("mlp", mlp)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if in_size % patch or dim % heads:
            raise ValueError(f"in_size ({in_size}) must be a multiple of patch ({patch}) and dim ({dim}) of heads "
                             f"({heads}).")
        tokens = (in_size // patch) ** 2
        with seeded(seed):
            self.patch = nn.Conv2d(in_channels, dim, patch, stride=patch)
            self.cls = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
            self.blocks = nn.Sequential(*[ViTBlock(dim, heads, mlp) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        finish(self, {"name": "small_vit", "in_channels": in_channels, "num_classes": num_classes,
                      "in_size": in_size, "patch": patch, "dim": dim, "depth": depth, "heads": heads, "mlp": mlp,
                      "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])
