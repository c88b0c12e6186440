"""Generated RGB images of simple objects with exact ground-truth masks.

Each image holds one object (``shapes``) or two objects of different classes set apart
(``shapes_pairs``) on a textured, noisy background. The object colour is drawn independently of
its class (only constrained to contrast with the background), so the class can be decided from
the object's form alone. Masks are the very pixels that were painted with the object colour.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .dataset import Dataset

__all__ = ["SHAPE_CLASSES", "shapes", "shapes_pairs", "shape_mask"]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")

_TEXTURE_AMPLITUDE = 0.12   # background = base colour +- this (per channel)
_MIN_CONTRAST = 0.25        # object colour differs from every background pixel by >= this (L-inf)
_CHUNK = 256


# ------------------------------------------------------------------------------ geometry
def _local_coords(cx, cy, r, angle, size):
    """Pixel-centre coordinates in each object's frame, scaled so the object fits the unit disc."""
    g = np.arange(size, dtype=np.float64) + 0.5
    X = g[None, None, :] - np.asarray(cx, dtype=np.float64)[:, None, None]
    Y = g[None, :, None] - np.asarray(cy, dtype=np.float64)[:, None, None]
    c = np.cos(angle)[:, None, None]
    s = np.sin(angle)[:, None, None]
    r = np.asarray(r, dtype=np.float64)[:, None, None]
    u = (c * X + s * Y) / r
    v = (-s * X + c * Y) / r
    return u, v


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points (u, v) in the unit-scale shape `name` (all lie in the unit disc)."""
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":  # equilateral, inscribed in the unit circle (inradius 1/2)
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            a = -math.pi / 2 + 2 * math.pi * k / 3
            inside &= (u * math.cos(a) + v * math.sin(a)) <= 0.5
        return inside
    if name == "star":  # five points, outer radius 1, inner radius 0.45
        rho, half = 0.45, math.pi / 5
        R = np.hypot(u, v)
        # angle to the nearest spike tip, in [0, pi/5] (tips at multiples of 2 pi / 5)
        phi = half - np.abs(np.mod(np.arctan2(v, u), 2 * half) - half)
        px, py = R * np.cos(phi), R * np.sin(phi)
        bx, by = rho * math.cos(half) - 1.0, rho * math.sin(half)  # edge: tip (1, 0) -> notch
        return (bx * py - by * (px - 1.0)) >= 0.0                  # on the centre's side of it
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.28) & (av <= 0.9)) | ((av <= 0.28) & (au <= 0.9))
    raise ValueError(f"unknown shape {name!r}; choose from {SHAPE_CLASSES}.")


def shape_mask(name: str, cx: float, cy: float, radius: float, angle: float = 0.0,
               size: int = 64) -> torch.Tensor:
    """Boolean ``[size, size]`` mask of one shape (pixel centres inside the outline)."""
    u, v = _local_coords([cx], [cy], [radius], np.array([angle]), size)
    return torch.from_numpy(_inside(name, u, v)[0])


def _render_masks(cls: np.ndarray, cx, cy, r, angle, size: int, names: Sequence[str]) -> np.ndarray:
    u, v = _local_coords(cx, cy, r, angle, size)
    out = np.zeros(u.shape, dtype=bool)
    for k, name in enumerate(names):
        sel = cls == k
        if sel.any():
            out[sel] = _inside(name, u[sel], v[sel])
    return out


# ---------------------------------------------------------------------------- colours
def _backgrounds(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "base": rng.uniform(0.15, 0.85, size=(n, 3)),
        "weights": rng.uniform(-1.0, 1.0, size=(n, 3)),
        "freq": rng.uniform(1.5, 6.0, size=(n, 3)),
        "orient": rng.uniform(0.0, math.pi, size=(n, 3)),
        "phase": rng.uniform(0.0, 2 * math.pi, size=(n, 3)),
        "amp": rng.uniform(0.3, 1.0, size=(n, 3)),
    }


def _object_colours(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Uniform RGB colours, redrawn until they contrast with the background (class-blind)."""
    need = _TEXTURE_AMPLITUDE + _MIN_CONTRAST
    col = rng.uniform(0.0, 1.0, size=base.shape)
    bad = np.abs(col - base).max(axis=-1) < need
    while bad.any():
        col[bad] = rng.uniform(0.0, 1.0, size=(int(bad.sum()), 3))
        bad = np.abs(col - base).max(axis=-1) < need
    return col


def _paint_background(bg: dict[str, np.ndarray], sl: slice, size: int) -> np.ndarray:
    """Texture: base colour + amplitude * (normalised sum of three plane waves) * channel weight."""
    g = (np.arange(size, dtype=np.float64) + 0.5) / size
    Y, X = np.meshgrid(g, g, indexing="ij")
    freq, orient, phase, amp = (bg[k][sl] for k in ("freq", "orient", "phase", "amp"))
    m = freq.shape[0]
    t = np.zeros((m, size, size))
    for j in range(freq.shape[1]):
        proj = (X[None] * np.cos(orient[:, j, None, None]) + Y[None] * np.sin(orient[:, j, None, None]))
        t += amp[:, j, None, None] * np.sin(2 * math.pi * freq[:, j, None, None] * proj
                                            + phase[:, j, None, None])
    t /= amp.sum(axis=1)[:, None, None]
    img = bg["base"][sl][:, :, None, None] + _TEXTURE_AMPLITUDE * bg["weights"][sl][:, :, None, None] * t[:, None]
    return img


# -------------------------------------------------------------------------- placement
def _check(n: int, size: int, noise: float, names: Sequence[str], min_classes: int) -> list[str]:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}.")
    names = list(names)
    unknown = [c for c in names if c not in SHAPE_CLASSES]
    if unknown or len(set(names)) != len(names) or len(names) < min_classes:
        raise ValueError(
            f"classes must be >= {min_classes} distinct names from {SHAPE_CLASSES}, got {names}."
        )
    return names


def _radius_range(radius, most: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in radius)
    if not 0.02 <= lo <= hi <= most:
        raise ValueError(f"radius must be (low, high) fractions of the size with "
                         f"0.02 <= low <= high <= {most}, got {radius}.")
    return lo, hi


def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def _noisy(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    if noise > 0:
        img = img + rng.normal(0.0, noise, size=img.shape)
    return np.clip(img, 0.0, 1.0)


def shapes(n: int = 2500, size: int = 64, seed: int = 0, noise: float = 0.05,
           classes: Sequence[str] = SHAPE_CLASSES, rotation: float = 0.0,
           radius: tuple[float, float] = (0.12, 0.28), progress: bool = True) -> Dataset:
    """`n` RGB images ``[n, 3, size, size]`` in [0, 1], one object each, labels balanced.

    Object: class uniform over `classes` (counts equal up to one), radius uniform in
    `radius` * size (the shape fits a circle of that radius), random position (fully inside), rotation uniform in
    [-rotation, rotation] degrees (0: upright, which a small CNN learns in a few epochs),
    colour uniform in RGB independent of the class. Background: a random base colour plus a texture of three plane
    waves (+- 0.12), and Gaussian pixel noise of std `noise` over the whole image.
    ``masks`` ``[n, 1, size, size]`` are exactly the pixels painted with the object colour.
    ``meta`` holds each object's "color", "center", "radius", "angle" and the "background" colour.
    """
    names = _check(n, size, noise, classes, 2)
    rng = np.random.default_rng(seed)
    y = _balanced(rng, n, len(names))
    r = rng.uniform(*_radius_range(radius, 0.45), size=n) * size
    cx = rng.uniform(r + 1, size - 1 - r)
    cy = rng.uniform(r + 1, size - 1 - r)
    angle = rng.uniform(-1.0, 1.0, size=n) * math.radians(rotation)
    bg = _backgrounds(rng, n)
    colour = _object_colours(rng, bg["base"])

    x = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, 1, size, size), dtype=bool)
    starts = range(0, n, _CHUNK)
    for s in tqdm(starts, desc="shapes", unit="chunk", disable=not progress, leave=False):
        sl = slice(s, min(s + _CHUNK, n))
        m = _render_masks(y[sl], cx[sl], cy[sl], r[sl], angle[sl], size, names)
        img = _paint_background(bg, sl, size)
        img = np.where(m[:, None], colour[sl][:, :, None, None], img)
        x[sl] = _noisy(img, rng, noise)
        masks[sl, 0] = m
    meta = {
        "name": "shapes", "seed": seed, "size": size, "noise": noise, "rotation": rotation,
        "radius_range": tuple(radius),
        "color": torch.from_numpy(colour).float(),
        "background": torch.from_numpy(bg["base"]).float(),
        "center": torch.from_numpy(np.stack([cx, cy], axis=1)).float(),
        "radius": torch.from_numpy(r).float(),
        "angle": torch.from_numpy(angle).float(),
    }
    return Dataset(torch.from_numpy(x), torch.from_numpy(y).long(), list(names), None,
                   torch.from_numpy(masks), meta)


def shapes_pairs(n: int = 500, size: int = 64, seed: int = 0, noise: float = 0.05,
                 classes: Sequence[str] = SHAPE_CLASSES, gap: float = 3.0,
                 rotation: float = 0.0, radius: tuple[float, float] = (0.12, 0.20),
                 progress: bool = True) -> Dataset:
    """`n` images holding two objects of different classes, set apart by >= `gap` pixels.

    ``y`` is ``[n, 2]`` (the two classes, in random order); every unordered class pair occurs
    equally often (up to one), so each class is equally frequent. ``masks`` is
    ``[n, len(classes), size, size]``: one mask per class, empty for the absent classes.
    Radii uniform in `radius` * size, rotations in [-rotation, rotation] degrees; each object's
    colour is drawn independently (class-blind). Same background and noise as `shapes`.
    """
    names = _check(n, size, noise, classes, 2)
    if gap < 0:
        raise ValueError(f"gap must be >= 0 pixels, got {gap}.")
    rng = np.random.default_rng(seed)
    pairs = np.array(list(combinations(range(len(names)), 2)))
    y = pairs[_balanced(rng, n, len(pairs))]
    swap = rng.random(n) < 0.5
    y[swap] = y[swap][:, ::-1]
    r = rng.uniform(*_radius_range(radius, 0.25), size=(n, 2)) * size
    angle = rng.uniform(-1.0, 1.0, size=(n, 2)) * math.radians(rotation)
    centres = np.empty((n, 2, 2))
    todo = np.arange(n)
    for _ in range(2000):  # rejection sampling of both centres, all pending images at once
        lo, hi = r[todo] + 1, size - 1 - r[todo]                     # [m, 2] per object
        c = rng.uniform(lo[:, :, None], hi[:, :, None], size=(len(todo), 2, 2))
        ok = np.hypot(*(c[:, 1] - c[:, 0]).T) >= r[todo, 0] + r[todo, 1] + gap
        centres[todo[ok]] = c[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
    if len(todo):
        raise ValueError(f"could not place two objects of radius {radius} x {size} px "
                         f"{gap} pixels apart in {size}x{size} images; use smaller radii or gap.")
    bg = _backgrounds(rng, n)
    colour = np.stack([_object_colours(rng, bg["base"]) for _ in range(2)], axis=1)

    x = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, len(names), size, size), dtype=bool)
    for s in tqdm(range(0, n, _CHUNK), desc="shape pairs", unit="chunk", disable=not progress,
                  leave=False):
        sl = slice(s, min(s + _CHUNK, n))
        img = _paint_background(bg, sl, size)
        rows = np.arange(sl.start, sl.stop)
        for j in range(2):
            m = _render_masks(y[sl, j], centres[sl, j, 0], centres[sl, j, 1], r[sl, j],
                              angle[sl, j], size, names)
            img = np.where(m[:, None], colour[sl, j][:, :, None, None], img)
            masks[rows, y[sl, j]] = m
        x[sl] = _noisy(img, rng, noise)
    meta = {
        "name": "shapes_pairs", "seed": seed, "size": size, "noise": noise, "gap": gap,
        "rotation": rotation, "radius_range": tuple(radius),
        "color": torch.from_numpy(colour).float(),
        "background": torch.from_numpy(bg["base"]).float(),
        "center": torch.from_numpy(centres).float(),
        "radius": torch.from_numpy(r).float(),
        "angle": torch.from_numpy(angle).float(),
    }
    return Dataset(torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y)).long(),
                   list(names), None, torch.from_numpy(masks), meta)
