"""Localisation against ground-truth object masks.

- :func:`pointing_game` (Zhang et al. 2016): the map's maximum lies on the object (within ``tolerance`` px;
  tied maxima count by the share of them on the object).
- :func:`relevance_mass` (Arras et al. 2022, relevance mass accuracy): share of the positive relevance that
  falls on the object.
- :func:`relevance_rank` (Arras et al. 2022, relevance rank accuracy): share of the ``K = |mask|`` highest
  positions that lie on the object.
- :func:`mask_auc`: ROC AUC of the map's values as a detector of object pixels.

Maps come from ``Attribution.heatmap()`` (channel sum; layer maps resized to the mask's size), from a map
tensor ``[N, H, W]`` or from values ``[N, C, H, W]``. Masks are boolean ``[N, H, W]`` or ``[N, 1, H, W]``.
Samples with an empty mask get NaN and are left out of the mean.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import MetricResult, as_maps, nanmean, to_np
from ._stats import roc_auc

__all__ = ["pointing_game", "relevance_mass", "relevance_rank", "mask_auc", "localisation", "prepare_masks"]


def prepare_masks(masks) -> torch.Tensor:
    """Boolean masks ``[N, *S]`` (a singleton channel dimension is dropped)."""
    if not isinstance(masks, torch.Tensor):
        import numpy as np
        if isinstance(masks, np.ndarray):
            masks = torch.from_numpy(masks)
        else:
            raise TypeError(f"masks must be a boolean tensor [N, H, W], got {type(masks).__name__}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() < 2:
        raise ValueError(f"masks must be [N, H, W] (or [N, 1, H, W]), got shape {tuple(masks.shape)}")
    if masks.is_floating_point():
        masks = masks > 0.5
    return masks.bool().cpu()


def _prepare(attribution, masks):
    m = prepare_masks(masks)
    maps = as_maps(attribution, tuple(m.shape[1:])).cpu()
    if maps.shape[0] != m.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {m.shape[0]} masks")
    empty = ~m.reshape(m.shape[0], -1).any(1)
    return maps, m, empty


def _nan_empty(v: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    v = v.to(torch.float64)
    return torch.where(empty, torch.full_like(v, float("nan")), v)


def _result(name, v, empty, **details) -> MetricResult:
    arr = to_np(v)
    return MetricResult(name, nanmean(arr), arr, None, {"n_empty_masks": int(empty.sum()), **details})


def pointing_game(attribution, masks, *, tolerance: int = 0) -> MetricResult:
    """Pointing game (Zhang et al. 2016): does the map's maximum lie on the object (the mask dilated by
    ``tolerance`` pixels)? Ties are scored as a pointer drawn at random among the tied maxima: the per-sample
    hit is the share of the maximal positions that lie on the object (1 or 0 for a unique maximum; a flat map
    scores the object's share of the image, i.e. chance; a map constant over grid cells or superpixels scores
    the share of its best cell that covers the object). ``score``: the hit rate.

    >>> import torch
    >>> from attrkit.metrics import pointing_game
    >>> mask = torch.zeros(1, 8, 8, dtype=torch.bool); mask[0, 2:4, 2:4] = True
    >>> pointing_game(mask.float(), mask).score
    1.0
    """
    if not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an int >= 0 (pixels), got {tolerance!r}")
    maps, m, empty = _prepare(attribution, masks)
    if tolerance > 0 and m.dim() == 3:
        k = 2 * tolerance + 1
        m = F.max_pool2d(m.float().unsqueeze(1), k, stride=1, padding=tolerance).squeeze(1) > 0
    n = maps.shape[0]
    flat, fm = maps.reshape(n, -1), m.reshape(n, -1)
    top = flat == flat.amax(1, keepdim=True)
    hit = (top & fm).sum(1).to(torch.float64) / top.sum(1).clamp_min(1).to(torch.float64)
    return _result("pointing_game", _nan_empty(hit, empty), empty, tolerance=tolerance)


def relevance_mass(attribution, masks) -> MetricResult:
    """Relevance mass accuracy (Arras et al. 2022): ``sum_{mask} R+ / sum R+`` with ``R+`` the positive part of
    the map (0 when the map has no positive relevance)."""
    maps, m, empty = _prepare(attribution, masks)
    n = maps.shape[0]
    pos = maps.clamp_min(0).reshape(n, -1)
    inside = (pos * m.reshape(n, -1)).sum(1)
    tot = pos.sum(1)
    v = torch.where(tot > 0, inside / tot.clamp_min(1e-300), torch.zeros_like(tot))
    return _result("relevance_mass", _nan_empty(v, empty), empty)


def relevance_rank(attribution, masks) -> MetricResult:
    """Relevance rank accuracy (Arras et al. 2022): with ``K = |mask|``, the share of the ``K`` highest-valued
    positions that lie in the mask (ties broken by position)."""
    maps, m, empty = _prepare(attribution, masks)
    n = maps.shape[0]
    flat, fm = maps.reshape(n, -1), m.reshape(n, -1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    k = fm.sum(1)
    ranked = fm.gather(1, order)
    topk = torch.arange(flat.shape[1]).view(1, -1) < k.view(-1, 1)
    v = (ranked & topk).sum(1).to(torch.float64) / k.clamp_min(1).to(torch.float64)
    return _result("relevance_rank", _nan_empty(v, empty), empty)


def mask_auc(attribution, masks) -> MetricResult:
    """ROC AUC of the map's values for telling mask positions from the rest (0.5 = no better than chance)."""
    maps, m, empty = _prepare(attribution, masks)
    return _result("mask_auc", roc_auc(maps, m), empty)


def localisation(attribution, masks, *, tolerance: int = 0) -> dict:
    """All four localisation metrics: ``{"pointing_game", "relevance_mass", "relevance_rank", "mask_auc"}``."""
    return {"pointing_game": pointing_game(attribution, masks, tolerance=tolerance),
            "relevance_mass": relevance_mass(attribution, masks),
            "relevance_rank": relevance_rank(attribution, masks),
            "mask_auc": mask_auc(attribution, masks)}
