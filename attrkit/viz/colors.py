"""The thesis' heatmap colours (section 3.1), in plain NumPy so the report can use them without matplotlib.

Red for positive attributions, translucent near zero, blue for negative ones. The scale is symmetric
around 0: ``[-s, s]`` with ``s`` the ``clip``-th percentile of ``|values|`` (so a few extreme pixels do not
wash out the rest); values beyond it saturate. An all-zero map gets ``s = 1`` (nothing to show, no
division by zero).

>>> import numpy as np
>>> s = scale_for(np.array([[-2.0, 1.0], [0.5, 0.0]]), clip=100)
>>> (s.vmin, s.vmax)
(-2.0, 2.0)
>>> rgba = to_rgba(np.array([[-2.0, 0.0, 2.0]]), s)
>>> rgba[0, 0, 2] > rgba[0, 0, 0], rgba[0, 1, 3], rgba[0, 2, 0] > rgba[0, 2, 2]
(True, 0.0, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("signed", "positive", "negative", "absolute")

# Colours (RGB in [0, 1]): a strong red, a strong blue, and a dark violet for magnitudes.
RED = (0.84, 0.09, 0.11)
BLUE = (0.13, 0.33, 0.80)
MAGNITUDE = (0.35, 0.05, 0.45)


@dataclass(frozen=True)
class Scale:
    """The value range a colour map spans: ``vmin`` is ``-vmax`` (signed) or 0 (one-sided modes)."""
    vmin: float
    vmax: float
    mode: str = "signed"
    clip: float = 99.5

    @property
    def limit(self) -> float:
        """The magnitude that saturates the colour (``s``)."""
        return max(abs(self.vmin), abs(self.vmax))

    @property
    def label(self) -> str:
        return {"signed": "attribution", "positive": "positive attribution",
                "negative": "negative attribution", "absolute": "|attribution|"}[self.mode]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown heatmap mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def apply_mode(values: np.ndarray, mode: str = "signed") -> np.ndarray:
    """``signed``: as is; ``positive``: negatives set to 0; ``negative``: positives set to 0;
    ``absolute``: ``|values|``. Non-finite entries become 0."""
    check_mode(mode)
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "positive":
        return np.maximum(v, 0.0)
    if mode == "negative":
        return np.minimum(v, 0.0)
    if mode == "absolute":
        return np.abs(v)
    return v


def scale_for(values, mode: str = "signed", clip: float = 99.5) -> Scale:
    """The colour scale for ``values`` (after :func:`apply_mode`): ``s = percentile(|v|, clip)``.

    ``signed`` gives ``[-s, s]``, ``positive``/``absolute`` ``[0, s]``, ``negative`` ``[-s, 0]``.
    ``s`` falls back to the maximum when the percentile is 0 but some value is not, and to 1 for an
    all-zero map."""
    if not 0 < clip <= 100:
        raise ValueError(f"clip must be a percentile in (0, 100], got {clip}")
    v = np.abs(apply_mode(values, mode)).ravel()
    s = float(np.percentile(v, clip)) if v.size else 0.0
    if s <= 0:
        s = float(v.max()) if v.size else 0.0
    if not np.isfinite(s) or s <= 0:
        s = 1.0
    lo, hi = {"signed": (-s, s), "positive": (0.0, s), "absolute": (0.0, s), "negative": (-s, 0.0)}[mode]
    return Scale(lo, hi, mode, clip)


def shared_scale(arrays, mode: str = "signed", clip: float = 99.5) -> Scale:
    """One scale for several maps (so their colours compare)."""
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    return scale_for(np.concatenate(arrays) if arrays else np.zeros(1), mode, clip)


def to_rgba(values, scale: Scale, gamma: float = 1.0) -> np.ndarray:
    """RGBA image ``[..., 4]`` in [0, 1]: colour by sign, opacity ``min(|v| / s, 1) ** gamma``.

    Zero is fully transparent, so a map laid over an image lets it show through where nothing happens."""
    v = apply_mode(values, scale.mode)
    s = scale.limit if scale.limit > 0 else 1.0
    t = np.clip(np.abs(v) / s, 0.0, 1.0) ** gamma
    out = np.zeros(v.shape + (4,), dtype=np.float64)
    if scale.mode == "absolute":
        out[..., :3] = MAGNITUDE
    else:
        out[..., :3] = np.where((v >= 0)[..., None], np.asarray(RED), np.asarray(BLUE))
    out[..., 3] = t
    return out


def composite(rgba: np.ndarray, background: np.ndarray | None = None, opacity: float = 1.0) -> np.ndarray:
    """Lay ``rgba`` over ``background`` (RGB ``[..., 3]`` or grey ``[...]``; white when None) -> RGB."""
    alpha = rgba[..., 3:4] * float(opacity)
    if background is None:
        bg = np.ones(rgba.shape[:-1] + (3,))
    else:
        bg = np.asarray(background, dtype=np.float64)
        if bg.ndim == rgba.ndim - 1:
            bg = np.repeat(bg[..., None], 3, axis=-1)
    return rgba[..., :3] * alpha + bg * (1 - alpha)


def colormap_table(n: int = 256, mode: str = "signed") -> np.ndarray:
    """``[n, 4]`` RGBA entries from ``vmin`` to ``vmax`` (for a matplotlib ListedColormap or a CSS bar)."""
    check_mode(mode)
    lo, hi = {"signed": (-1.0, 1.0), "positive": (0.0, 1.0), "absolute": (0.0, 1.0),
              "negative": (-1.0, 0.0)}[mode]
    return to_rgba(np.linspace(lo, hi, n), Scale(lo, hi, mode))


# ----------------------------------------------------------------------------- images
def image_for_display(x) -> np.ndarray:
    """An input image ``[C, H, W]`` (or ``[H, W]``) as RGB ``[H, W, 3]`` in [0, 1] (min-max per image;
    1 channel repeated, more than 3 channels: the first three)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"an image must be [C, H, W] or [H, W], got shape {a.shape}")
    a = np.nan_to_num(a)
    a = np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a[:3] if a.shape[0] >= 3 else \
        np.concatenate([a, a[-1:].repeat(3 - a.shape[0], axis=0)])
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)
    return a.transpose(1, 2, 0)


def grey(rgb: np.ndarray, lighten: float = 0.35) -> np.ndarray:
    """Luminance of an RGB image, pulled towards white by ``lighten`` so coloured maps stand out on it."""
    lum = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return lighten + (1 - lighten) * lum


def boundaries(labels) -> np.ndarray:
    """Boolean ``[H, W]``: pixels whose right or lower neighbour belongs to another player."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    return edge
