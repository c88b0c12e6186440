"""A two-input model: a small CNN branch for an image, an MLP branch for a table, a joint head."""

from __future__ import annotations

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

__all__ = ["ImageTableNet"]


@register("image_table_net")
class ImageTableNet(nn.Module):
    """``forward(image [N, C, H, W], table [N, F])`` -> logits ``[N, num_classes]``.

    ``image_net``: conv3x3(width), ReLU, max-pool 2, conv3x3(2 width), ReLU, global max-pool;
    ``table_net``: Linear(F, hidden / 2), ReLU; ``classifier``: Linear on both branches' features
    concatenated, ReLU, Linear(hidden, num_classes). One ReLU module per use; none in place.
    """

    def __init__(self, in_channels: int = 1, n_features: int = 4, num_classes: int = 2,
                 width: int = 8, hidden: int = 32, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("n_features", n_features),
                        ("num_classes", num_classes), ("width", width), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        with seeded(seed):
            self.image_net = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                nn.AdaptiveMaxPool2d(1), nn.Flatten())
            self.table_net = nn.Sequential(nn.Linear(n_features, hidden // 2), nn.ReLU())
            self.classifier = nn.Sequential(nn.Linear(2 * width + hidden // 2, hidden), nn.ReLU(),
                                            nn.Linear(hidden, num_classes))
        self.last_conv = "image_net.3"
        with_config(self, {"name": "image_table_net", "in_channels": in_channels,
                      "n_features": n_features, "num_classes": num_classes, "width": width,
                      "hidden": hidden, "seed": seed})

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.image_net(image), self.table_net(table)], dim=1))
