"""Evaluation pictures: deletion/insertion curves and sanity-check cascades."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..attribution import Attribution
from ._mpl import save_figure, new_figure
from .colors import scale_for
from .heatmaps import add_colorbar, draw_image_map
from .maps import SampleView, view

_X_NAMES = ("fractions", "fraction", "x", "steps", "levels")
_Y_NAMES = ("scores", "score", "y", "values", "curve", "mean")


def _as_curve(curve) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(x, y, area) from ``(x, y)``, an array ``y`` (x = 0..1), a dict or an object with fraction/score
    fields (``fractions``/``x``, ``scores``/``y``, optional ``auc``/``area``). A 2-D ``y`` (one row per
    sample) is averaged over samples."""
    auc = None
    details = getattr(curve, "details", None)
    if isinstance(details, Mapping) and "curves" in details:          # attrkit.metrics.MetricResult
        return _clean(details.get("fractions"), details["curves"], getattr(curve, "score", None))
    if isinstance(curve, Mapping):
        get = curve.get
    elif isinstance(curve, (tuple, list)) and len(curve) == 2 and np.ndim(curve[0]) >= 1:
        x, y = curve
        return _clean(x, y, None)
    elif isinstance(curve, (np.ndarray, torch.Tensor, list, tuple)):
        return _clean(None, curve, None)
    else:
        get = lambda k, d=None: getattr(curve, k, d)
    x = next((get(k) for k in _X_NAMES if get(k) is not None), None)
    y = next((get(k) for k in _Y_NAMES if get(k) is not None), None)
    auc = next((get(k) for k in ("auc", "area", "aopc") if get(k) is not None), None)
    if y is None:
        raise TypeError(f"cannot read a curve from {type(curve).__name__}: give (x, y), an array of scores, "
                        f"or an object with one of {_Y_NAMES}")
    return _clean(x, y, auc)


def _clean(x, y, auc):
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=0)
    y = y.reshape(-1)
    x = np.linspace(0, 1, y.size) if x is None else \
        np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"a curve has {x.size} x values but {y.size} scores")
    if auc is not None:
        auc = float(np.mean(np.asarray(auc.detach().cpu() if isinstance(auc, torch.Tensor) else auc)))
    elif y.size > 1:
        auc = float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / max(x[-1] - x[0], 1e-12))
    return x, y, auc


def plot_curves(curves, *, title: str | None = None, kind: str = "deletion", xlabel: str | None = None,
                ylabel: str = "target score", ax=None, path=None, figsize=(5.0, 3.6)):
    """Deletion or insertion curves, one line per method, with the normalised area in the legend.

    ``curves``: ``{label: curve}`` (a curve as accepted by :func:`_as_curve`) or a sequence of objects
    with a ``method`` (or ``name``) field. Deletion: a good map makes the score fall fast (small area);
    insertion: rise fast (large area).
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    items = _items(curves)
    if not items:
        raise ValueError("plot_curves needs at least one curve")
    fig = ax.figure if ax is not None else new_figure(*figsize)
    ax = ax if ax is not None else fig.subplots()
    for label, c in items:
        x, y, auc = _as_curve(c)
        ax.plot(x, y, lw=1.6, label=f"{label} (area {auc:.3f})" if auc is not None else label)
    what = "removed" if kind == "deletion" else "inserted"
    ax.set_xlabel(xlabel or f"fraction of most-attributed features {what}", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    better = "lower area = better map" if kind == "deletion" else "higher area = better map"
    ax.set_title(title or f"{kind} curves ({better})", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def _items(curves) -> list:
    if isinstance(curves, Mapping):
        return list(curves.items())
    out = []
    if hasattr(curves, "details"):
        curves = [curves]
    for i, c in enumerate(curves):
        details = getattr(c, "details", None)
        label = (details.get("method") if isinstance(details, Mapping) else None) or getattr(c, "method", None) \
            or getattr(c, "name", None) or f"curve {i}"
        out.append((str(label), c))
    return out


def plot_cascade(maps: Sequence, labels: Sequence[str] | None = None, scores: Sequence[float] | None = None,
                 *, index: int = 0, score_name: str = "Spearman rank corr. to the original",
                 mode: str = "signed", clip: float = 99.5, class_names=None, title: str | None = None,
                 image=None, path=None, cell: float = 2.0):
    """Sanity-check cascade (Adebayo et al. 2018): the map after randomising each layer in turn, with
    its similarity to the original map under each panel.

    ``maps``: a ``RandomisationResult`` of ``attrkit.metrics`` (its sample ``index`` is drawn, scored by
    its first similarity), or Attributions / ``[H, W]`` arrays in cascade order, the first one from the
    trained model, with ``labels`` saying what was randomised for each and ``scores`` the similarity of each
    map to the first. A map that stays the same while the weights are destroyed does not explain the model.
    ``image``: the input ``[C, H, W]``; maps of a layer-level method are then laid over it in grey.
    """
    at_layer = False
    if hasattr(maps, "randomised_maps"):
        at_layer = maps.details.get("layer") is not None
        maps, labels, scores, name, what = _from_randomisation(maps, index)
        score_name = score_name if score_name != "Spearman rank corr. to the original" else name
        title = title or what
        index = 0
    maps = list(maps)
    if not maps:
        raise ValueError("plot_cascade needs at least one map")
    labels = list(labels) if labels is not None else ["original"] + [f"step {i}" for i in range(1, len(maps))]
    if len(labels) != len(maps):
        raise ValueError(f"{len(labels)} labels for {len(maps)} maps")
    if scores is not None and len(scores) != len(maps):
        raise ValueError(f"{len(scores)} scores for {len(maps)} maps")
    views = [_to_view(m, index, class_names) for m in maps]
    if image is not None:
        from .colors import image_for_display
        img = image_for_display(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image))
        for v in views:
            if v.image is None and v.map.shape == img.shape[:2]:
                v.image, v.at_layer = img, v.at_layer or at_layer
    fig = new_figure(cell * len(maps) + 1.0, cell + 1.3)
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for i, (ax, v) in enumerate(zip(axes, views)):
        draw_image_map(ax, v, scale_for(v.map, mode, clip))
        ax.set_title(labels[i], fontsize=8)
        if scores is not None and scores[i] is not None and np.isfinite(float(scores[i])):
            ax.set_xlabel(f"{float(scores[i]):.2f}", fontsize=9)
    if scores is not None:
        fig.supxlabel(f"under each map: {score_name} (near 1 = the map ignored the randomisation)", fontsize=8)
    what = views[0].method + (f" at layer {views[0].layer}" if views[0].layer else "")
    fig.suptitle(title or f"sanity check: {what}, layers randomised from the top", fontsize=9)
    return save_figure(fig, path)


def _from_randomisation(res, index: int):
    if res.maps is None or res.randomised_maps is None:
        raise ValueError("this randomisation result kept no maps; run it with keep_maps=True")
    if not 0 <= index < res.maps.shape[0]:
        raise ValueError(f"index {index} is out of range for {res.maps.shape[0]} sample(s)")
    sim_name = "spearman_abs" if "spearman_abs" in res.similarity else next(iter(res.similarity), None)
    maps = [res.maps[index]] + [res.randomised_maps[k, index] for k in range(len(res.stages))]
    cascading = getattr(res, "mode", "cascading") == "cascading"
    labels = ["original"] + [(f"up to {st[-1]}" if cascading else f"only {st[0]}") for st in res.stages]
    scores = None
    if sim_name is not None:
        scores = [1.0] + [float(res.similarity[sim_name][k, index]) for k in range(len(res.stages))]
    pretty = {"spearman_abs": "Spearman rank corr. of |map| to the original", "spearman": "Spearman rank corr.",
              "ssim": "SSIM to the original", "hog": "HOG similarity"}.get(sim_name, str(sim_name))
    meth = res.details.get("method", "map")
    layer = res.details.get("layer")
    what = (f"sanity check ({'cascading' if cascading else 'independent'} randomisation): {meth}"
            + (f" at layer {layer}" if layer else "") + (", layers randomised from the top" if cascading else ""))
    return maps, labels, scores, pretty, what


def _to_view(m, index, class_names) -> SampleView:
    if isinstance(m, Attribution):
        return view(m, index, class_names)
    a = np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(0)
    if a.ndim != 2:
        raise ValueError(f"a cascade map must be an Attribution or an [H, W] array, got shape {a.shape}")
    return SampleView("image", a, None, False, "map", None, None, "")


__all__ = ["plot_curves", "plot_cascade", "add_colorbar"]


def plot_panels(rows: Sequence[Mapping], metrics: Sequence[str], label: str | Sequence[str], *,
                titles: Mapping[str, str] | None = None, title: str | None = None, path=None):
    """One horizontal bar panel per metric, side by side, sharing the row labels: quantities in different units
    (seconds, correlations, fractions) each get their own axis instead of sharing one.

    ``rows``: dicts; ``metrics``: the keys to draw; ``label``: the key(s) naming each row; ``titles``: panel
    titles per metric (default: the key)."""
    keys = (label,) if isinstance(label, str) else tuple(label)
    names = [" / ".join(str(r.get(k)) for k in keys if r.get(k) is not None) for r in rows]
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    if not metrics:
        raise ValueError("plot_panels: none of the metrics has a value in the rows")
    fig = new_figure(2.6 * len(metrics) + 1.6, 0.42 * len(rows) + 1.3)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    ys = np.arange(len(rows))
    colours = ["#4d4d4d", "#b2182b", "#2166ac", "#1b7837", "#762a83"]
    for k, (ax, m) in enumerate(zip(axes, metrics)):
        vals = np.array([np.nan if r.get(m) is None else float(r.get(m)) for r in rows])
        ax.barh(ys, np.nan_to_num(vals), color=colours[k % len(colours)], height=0.6)
        for y, v in zip(ys, vals):
            if np.isfinite(v):
                ax.text(v, y, f" {v:.4g} " if v >= 0 else f"{v:.4g} ", va="center", ha="left" if v >= 0 else "right",
                        fontsize=7)
        ax.set_title((titles or {}).get(m, m), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.3)
        ax.axvline(0, color="0.5", lw=0.6)
    axes[0].set_yticks(ys, names, fontsize=7)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
