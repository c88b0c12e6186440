"""A generated image + table task whose label depends on both inputs in a known way.

Each sample is a grey image ``[1, size, size]`` of textured noise that holds a bright square in half
of the samples, and a row of ``n_features`` standard-normal table features. The label is

    y = [a square is in the image]  XOR  [table feature "key" > 0]

so neither input alone predicts better than chance (50 %): flipping the sign of ``key`` or
removing the square flips the label, and the other table features never matter.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset

__all__ = ["image_table", "IMAGE_TABLE_RULE"]

IMAGE_TABLE_RULE = "y = [square in image] XOR [key > 0]; the other table features are noise"


def image_table(n: int = 2000, size: int = 16, n_features: int = 4, seed: int = 0) -> Dataset:
    """`n` (image, table) pairs labelled by ``[square present] XOR [key > 0]``.

    Fields of the returned `Dataset`:

    - ``x``: a tuple ``(images [n, 1, size, size] in [0, 1], table [n, n_features])``, float32, to be
      passed as ``model(*x)``;
    - ``y``: 0 / 1 (classes ``"0"``, ``"1"``);
    - ``masks``: ``[n, 1, size, size]`` bool, the square's pixels (all False when there is none);
    - ``feature_names``: the table's columns, ``"key"`` first, then ``"noise_1"``...;
    - ``meta``: ``present`` (bool ``[n]``), ``key_positive`` (bool ``[n]``), ``rule``, ``seed``.

    Half of the images (exactly, up to one) hold a square of side 3 to size // 3 px at a random
    place, painted 0.5 brighter than the background; the background is 0.25 + uniform texture of
    +- 0.1. Same `seed`, same data.
    """
    for name, v in (("n", n), ("size", size), ("n_features", n_features)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    if size < 9:
        raise ValueError(f"size must be >= 9 pixels to hold a square, got {size}.")
    rng = np.random.default_rng(seed)
    present = rng.permutation(np.arange(n) % 2).astype(bool)
    table = rng.standard_normal((n, n_features)).astype(np.float32)
    side = rng.integers(3, size // 3 + 1, size=n)
    top = (rng.random(n) * (size - side + 1)).astype(int)
    left = (rng.random(n) * (size - side + 1)).astype(int)
    images = (0.25 + rng.uniform(-0.1, 0.1, size=(n, 1, size, size))).astype(np.float32)
    masks = np.zeros((n, 1, size, size), dtype=bool)
    for i in np.flatnonzero(present):
        masks[i, 0, top[i]:top[i] + side[i], left[i]:left[i] + side[i]] = True
    images = np.where(masks, images + 0.5, images).astype(np.float32)
    key = table[:, 0] > 0
    y = (present ^ key).astype(np.int64)
    names = ["key"] + [f"noise_{j}" for j in range(1, n_features)]
    meta = {"name": "image_table", "seed": seed, "rule": IMAGE_TABLE_RULE,
            "present": torch.from_numpy(present), "key_positive": torch.from_numpy(key),
            "inputs": ("image", "table")}
    return Dataset((torch.from_numpy(images), torch.from_numpy(table)), torch.from_numpy(y),
                   ["0", "1"], names, torch.from_numpy(masks), meta)
