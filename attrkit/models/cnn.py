"""Small convolutional networks: `SmallCNN` for the built-in image sets and `bench_cnn`.

Every ReLU is its own module (relevance rules attach one hook per use) and none is in-place.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

__all__ = ["SmallCNN", "bench_cnn", "BenchCNN"]


@register("small_cnn")
class SmallCNN(nn.Module):
    """Four 3x3 conv + ReLU blocks, a global pooling and an MLP head (fast to train on a CPU).

    ``features`` (an ``nn.Sequential``): conv(width), ReLU, conv(2w), ReLU, max-pool,
    conv(4w), ReLU, max-pool, conv(8w), ReLU. The first conv has stride 2 when
    ``in_size >= 32``; a max-pool is kept only while the map is >= 8 px. Then ``pool``
    (``head="max"``: global max, ``"avg"``: global average, ``"flatten"``: none) and
    ``classifier`` = Linear(., hidden), ReLU, Linear(hidden, num_classes).
    Maps: 64 -> 32 -> 16 -> 8 px; 25 -> 12 -> 6; 16 -> 8 -> 4. ``last_conv`` / ``last_relu``
    name the last convolution and the ReLU after it (the layer for Grad-CAM).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 5, in_size: int = 64,
                 width: int = 8, hidden: int = 64, head: str = "max", *,
                 seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("in_size", in_size), ("width", width), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if in_size < 4:
            raise ValueError(f"in_size must be >= 4 pixels, got {in_size}.")
        if head not in ("max", "avg", "flatten"):
            raise ValueError(f"head must be 'max', 'avg' or 'flatten', got {head!r}.")
        with seeded(seed):
            stride = 2 if in_size >= 32 else 1
            size = (in_size + 1) // 2 if stride == 2 else in_size
            mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, stride=stride, padding=1),
                                     nn.ReLU()]
            c_in = width
            for k, c_out in enumerate((2 * width, 4 * width, 8 * width)):
                mods += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                if k < 2 and size >= 8:
                    mods.append(nn.MaxPool2d(2))
                    size //= 2
                c_in = c_out
            self.features = nn.Sequential(*mods)
            if head == "max":
                self.pool, n_flat = nn.AdaptiveMaxPool2d(1), c_in
            elif head == "avg":
                self.pool, n_flat = nn.AdaptiveAvgPool2d(1), c_in
            else:
                self.pool, n_flat = nn.Identity(), c_in * size * size
            self.classifier = nn.Sequential(
                nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )
            for m in self.modules():  # He init: trains out of the initial plateau quickly
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.last_conv = f"features.{len(mods) - 2}"
        self.last_relu = f"features.{len(mods) - 1}"
        with_config(self, {"name": "small_cnn", "in_channels": in_channels, "num_classes": num_classes,
                      "in_size": in_size, "width": width, "hidden": hidden, "head": head,
                      "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register("bench_cnn")
class BenchCNN(nn.Module):
    """conv3x3(32), conv3x3(32), maxpool, conv3x3(64), conv3x3(64), maxpool, FC 16384-128, FC 128-10.

    Input ``[N, 3, 64, 64]``; ReLU after every conv and after the first FC.
    """

    def __init__(self, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        with seeded(seed):
            self.features = nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(nn.Linear(64 * 16 * 16, 128), nn.ReLU(), nn.Linear(128, 10))
        with_config(self, {"name": "bench_cnn", "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def bench_cnn(seed: int = DEFAULT_SEED) -> BenchCNN:
    """The benchmark CNN (see `BenchCNN`), in eval mode."""
    return BenchCNN(seed=seed)
