"""Real images shipped inside scikit-learn and scikit-image (nothing is downloaded)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import Dataset

__all__ = ["digits", "faces", "photos", "PHOTO_NAMES"]

# Colour photographs that scikit-image ships in its wheel (no pooch download needed).
PHOTO_NAMES = ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry",
               "hubble_deep_field", "colorwheel", "cat")


def _need(module: str, extra: str = "data"):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"this data set needs {module.split('.')[0]}; install it with "
            f"`pip install attrkit[{extra}]`."
        ) from err


def digits(upscale: int = 1) -> Dataset:
    """scikit-learn's 8x8 handwritten digits: 1,797 images ``[N, 1, 8u, 8u]`` in [0, 1], 10 classes.

    `upscale` (integer >= 1) enlarges the images by bilinear interpolation.
    """
    if not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise ValueError(f"upscale must be an integer >= 1, got {upscale!r}.")
    load_digits = _need("sklearn.datasets").load_digits
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    if upscale > 1:
        x = F.interpolate(x, scale_factor=int(upscale), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return Dataset(x, y, [str(c) for c in bunch.target_names], None, None,
                   {"name": "digits", "upscale": int(upscale), "source": "sklearn.datasets.load_digits"})


def faces() -> Dataset:
    """scikit-image's LFW subset: 100 faces and 100 non-faces, ``[200, 1, 25, 25]`` grey in [0, 1].

    Classes: 0 = "non-face", 1 = "face".
    """
    skdata = _need("skimage.data")
    imgs = np.asarray(skdata.lfw_subset(), dtype=np.float32)  # first 100 faces, last 100 not
    x = torch.from_numpy(imgs)[:, None]
    y = torch.cat([torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)])
    return Dataset(x, y, ["non-face", "face"], None, None,
                   {"name": "faces", "source": "skimage.data.lfw_subset"})


def _square_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop [C, H, W] to a square and resize it to size x size (antialiased bilinear)."""
    _, h, w = img.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[:, top:top + s, left:left + s]
    out = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                        antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def photos(size: int | None = None, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """scikit-image's sample photographs as float RGB tensors ``[3, H, W]`` in [0, 1].

    Returns a dict name -> tensor (the photos have different sizes). With `size`, each photo is
    centre-cropped to a square and resized to ``size x size``, so ``torch.stack`` works.
    `names` picks photos from ``PHOTO_NAMES`` (default: all).
    """
    skdata = _need("skimage.data", "image")
    names = list(PHOTO_NAMES if names is None else names)
    bad = [n for n in names if n not in PHOTO_NAMES]
    if bad:
        raise ValueError(f"unknown photo(s) {bad}; choose from {PHOTO_NAMES}.")
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}.")
    out = {}
    for name in names:
        arr = np.asarray(getattr(skdata, name)())
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        arr = arr[..., :3]
        img = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
        out[name] = img if size is None else _square_resize(img, int(size))
    return out
