"""VGG networks (Simonyan & Zisserman 2015) with torchvision's module names, without torchvision.

``features.N`` / ``avgpool`` / ``classifier.N`` match torchvision, so for VGG16 ``features.28`` is
the last convolution and ``features.29`` the ReLU after it. ReLUs are not in-place.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import DEFAULT_SEED, with_config, register, seeded

__all__ = ["VGG", "vgg", "vgg16_quarter", "VGG_CONFIGS"]

VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


@register("vgg")
class VGG(nn.Module):
    """VGG with conv widths scaled by `width`, FC width `fc_width` and an avgpool to in_size/32.

    At ``in_size=224`` the pooled map is 7x7 (torchvision's layout); smaller inputs pool to
    ``max(1, in_size // 32)``. Initialisation follows torchvision (Kaiming-normal convs,
    N(0, 0.01) linears, zero biases).
    """

    def __init__(self, config: str = "vgg16", num_classes: int = 1000, in_size: int = 224,
                 width: float = 1.0, fc_width: int = 4096, in_channels: int = 3,
                 dropout: float = 0.5, *, seed: int | None = DEFAULT_SEED) -> None:
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"unknown VGG config {config!r}; choose from {sorted(VGG_CONFIGS)}.")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}.")
        for name, v in (("num_classes", num_classes), ("in_size", in_size),
                        ("fc_width", fc_width), ("in_channels", in_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if in_size < 32:
            raise ValueError(f"VGG halves the input five times; in_size must be >= 32, got {in_size}.")
        pooled = max(1, in_size // 32)
        with seeded(seed):
            layers: list[nn.Module] = []
            c_in = in_channels
            for v in VGG_CONFIGS[config]:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    c_out = max(1, int(round(v * width)))
                    layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
                    c_in = c_out
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
            self.classifier = nn.Sequential(
                nn.Linear(c_in * pooled * pooled, fc_width), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(fc_width, fc_width), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(fc_width, num_classes),
            )
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)
        convs = [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        self.last_conv = f"features.{convs[-1]}"
        self.last_relu = f"features.{convs[-1] + 1}"
        with_config(self, {"name": "vgg", "config": config, "num_classes": num_classes,
                      "in_size": in_size, "width": width, "fc_width": fc_width,
                      "in_channels": in_channels, "dropout": dropout, "seed": seed})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg(config: str = "vgg16", num_classes: int = 1000, in_size: int = 224, width: float = 1.0,
        fc_width: int = 4096, in_channels: int = 3, seed: int = DEFAULT_SEED) -> VGG:
    """A VGG11/13/16/19 (see `VGG`), randomly initialised under `seed`, in eval mode."""
    return VGG(config, num_classes, in_size, width, fc_width, in_channels, seed=seed)


def vgg16_quarter(seed: int = DEFAULT_SEED) -> VGG:
    """VGG16 with every width / 4: convs 16..128, FC 6272-1024-1024-1000, input 3x224x224."""
    return VGG("vgg16", 1000, 224, 0.25, 1024, 3, seed=seed)
