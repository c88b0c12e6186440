"""The inputs every library gets: crops of scikit-image's sample photos and chelsea at 224x224.

Nothing is downloaded: the photos ship inside the scikit-image wheel. Crops are deterministic: each photo
is shrunk so its short side is 128 px and 64x64 crops are taken at fixed positions.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
          "colorwheel")   # (skimage.data.cat is chelsea again)
_OFFSETS = ((0.5, 0.5), (0.2, 0.25), (0.75, 0.7), (0.3, 0.8), (0.8, 0.2), (0.1, 0.6), (0.6, 0.05),
            (0.95, 0.45))   # crop positions (fractions of the free range in H, W)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> torch.Tensor:
    from skimage import data
    arr = np.asarray(getattr(data, name)())
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return torch.from_numpy(arr[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _shrink(img: torch.Tensor, short: int) -> torch.Tensor:
    _, h, w = img.shape
    s = short / min(h, w)
    size = (max(short, round(h * s)), max(short, round(w * s)))
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def crops(n: int = 16, size: int = 64) -> torch.Tensor:
    """``n`` distinct ``[3, size, size]`` crops of the sample photos, ``[n, 3, size, size]`` in [0, 1]."""
    out = []
    k = 0
    while len(out) < n:
        name = PHOTOS[k % len(PHOTOS)]
        fy, fx = _OFFSETS[(k // len(PHOTOS)) % len(_OFFSETS)]
        if k >= len(PHOTOS) * len(_OFFSETS):
            raise ValueError(f"at most {len(PHOTOS) * len(_OFFSETS)} crops are defined, asked for {n}")
        img = _shrink(_photo(name), 2 * size)
        _, h, w = img.shape
        top = int(round(fy * (h - size)))
        left = int(round(fx * (w - size)))
        out.append(img[:, top:top + size, left:left + size])
        k += 1
    return torch.stack(out).contiguous()


def chelsea(size: int = 224) -> torch.Tensor:
    """scikit-image's chelsea (cat) photo, centre-cropped and resized to ``[1, 3, size, size]``."""
    img = _photo("chelsea")
    _, h, w = img.shape
    s = min(h, w)
    img = img[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1).contiguous()


def tabular(n: int = 16, features: int = 20, seed: int = 0) -> torch.Tensor:
    """Standard-normal rows for ``bench_mlp`` (``[n, features]``, seeded)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g)


def model(name: str) -> torch.nn.Module:
    """A fresh reference network from ``attrkit.models`` (random weights, fixed seed, eval mode)."""
    from attrkit import models
    fn = {"bench_cnn": models.bench_cnn, "vgg16_quarter": models.vgg16_quarter, "bench_mlp": models.bench_mlp}
    if name not in fn:
        raise ValueError(f"unknown benchmark network {name!r}; use one of {sorted(fn)}")
    return fn[name]().eval()


@torch.no_grad()
def predicted(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row (the target every library is asked to explain)."""
    return model(x).argmax(1)


def superpixels(x: torch.Tensor, n: int) -> torch.Tensor:
    """SLIC superpixels of one image ``[1, C, H, W]`` as ``[H, W]`` labels, with ``n`` segments or as close to
    ``n`` as SLIC gets: ``n_segments`` hints ``n/2 .. 2n`` and compactness 10, 20, 5 are tried (SLIC's seed grid
    makes the count jump on small images, e.g. 44 -> 59 on a 64x64 crop). Built with attrkit's
    ``superpixels``; every library's game then uses these same labels."""
    from .workloads.common import players
    make = players("superpixels")
    best, best_k = None, None
    for compactness in (10.0, 20.0, 5.0):
        for hint in sorted(range(max(2, n // 2), 2 * n + 1), key=lambda h: (abs(h - n), h)):
            seg = make(x, n=hint, compactness=compactness)[0]
            k = int(seg.max()) + 1
            if k == n:
                return seg
            if best is None or (abs(k - n), k) < (abs(best_k - n), best_k):
                best, best_k = seg, k
    return best
