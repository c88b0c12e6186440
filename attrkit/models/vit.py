"""A small vision transformer (the zoo's ``shapes_vit``): conv patch embedding, class token, pre-norm blocks."""

from __future__ import annotations

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

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
    ``stem > 0``: a hybrid ViT (Dosovitskiy et al. 2021, section 3.1): the patch embedding reads the feature map of
    a convolutional backbone, ``SmallCNN(width=stem).features`` (64 px -> 8 x 8), with kernel = stride =
    ``patch / (in_size / map size)``, so a token still covers a `patch` x `patch` pixel patch. ``config["patch"]`` is
    that patch size (attrkit reads the token grid from it). ``pool="mean"``: no class token; the head reads the
    mean of the patch tokens after ``norm``.
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
            self.stem, c, k = nn.Identity(), in_channels, patch
            if stem:
                from .cnn import SmallCNN
                self.stem = SmallCNN(in_channels, num_classes, in_size, width=stem, seed=None).features
                with torch.no_grad():
                    c, side = self.stem(torch.zeros(1, in_channels, in_size, in_size)).shape[1:3]
                down = in_size // side
                if patch % down:
                    raise ValueError(f"with a stem the patch ({patch}) must be a multiple of its downsampling "
                                     f"({down}).")
                k = patch // down
            self.patch = nn.Conv2d(c, dim, k, stride=k)
            self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
            self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
            self.blocks = nn.Sequential(*[ViTBlock(dim, heads, mlp) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        with_config(self, {"name": "small_vit", "in_channels": in_channels, "num_classes": num_classes,
                      "in_size": in_size, "patch": patch, "dim": dim, "depth": depth, "heads": heads, "mlp": mlp,
                      "stem": stem, "pool": pool, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(self.stem(x)).flatten(2).transpose(1, 2)
        if self.cls is not None:
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        t = self.norm(self.blocks(t + self.pos))
        return self.head(t[:, 0] if self.cls is not None else t.mean(1))
