"""Heatmaps in the thesis' colours: ``plot`` for one attribution, ``plot_grid`` for Figure 3.1's layout.

Pixel-level gradient maps are drawn on their own (over white); maps computed at a hidden layer are resized to
the image and laid translucently over the image shown in grey (thesis section 3.1), and so are the maps of
coalition games and occlusion (players and windows are regions of the image: the image shows which). Red = the region raised the
target's score, blue = it lowered it, transparent = no effect.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..attribution import Attribution
from ._mpl import save_figure, listed_cmap, new_figure
from .colors import Scale, check_mode, composite, grey, scale_for, to_rgba
from .maps import SampleView, view

EDGE_RGB = np.array([0.15, 0.15, 0.15])


def render(v: SampleView, scale: Scale, overlay: bool | None = None, opacity: float = 0.8,
           edges: bool = True) -> np.ndarray:
    """RGB ``[H, W, 3]`` of an image view: the coloured map over white, or over the grey image when
    ``overlay`` (default: only for layer-level maps)."""
    if v.kind not in ("image", "volume"):
        raise ValueError(f"render draws image maps; this view is a {v.kind}")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    overlay = (v.at_layer or v.over_grey) if overlay is None else overlay
    rgba = to_rgba(v.map, scale)
    if overlay and v.image is not None:
        rgb = composite(rgba, grey(v.image), opacity)
    else:
        rgb = composite(rgba, None, 1.0)
    if edges and v.edges is not None:
        rgb = rgb.copy()
        rgb[v.edges] = 0.35 * rgb[v.edges] + 0.65 * EDGE_RGB
    return rgb


def edge_segments(labels: np.ndarray) -> list:
    """Line segments (in pixel coordinates) between neighbouring pixels of different players."""
    lab = np.asarray(labels)
    segs = []
    ys, xs = np.nonzero(lab[:, :-1] != lab[:, 1:])
    segs += [((x + 0.5, y - 0.5), (x + 0.5, y + 0.5)) for y, x in zip(ys, xs)]
    ys, xs = np.nonzero(lab[:-1, :] != lab[1:, :])
    segs += [((x - 0.5, y + 0.5), (x + 0.5, y + 0.5)) for y, x in zip(ys, xs)]
    return segs


def _title(v: SampleView, extra: str = "") -> str:
    where = f"layer {v.layer}" if v.layer else "pixels"
    return f"{v.method}\nfor '{v.target_label}' at {where}{extra}"


def _input_title(v: SampleView, class_names) -> str:
    class_names = class_names if class_names is not None else v.class_names
    if v.predicted is None:
        return "input" + (f"\noutput {v.output:.3g}" if v.output is not None else "")
    from .maps import class_label
    return f"input\nmodel says '{class_label(v.predicted, class_names)}'"


def _prob(v: SampleView) -> str:
    return f" (p={v.probability:.2f})" if v.probability is not None else ""


def draw_image_map(ax, v: SampleView, scale: Scale, overlay=None, opacity: float = 0.8, edges: bool = True):
    """The map as an image in ``ax``; player boundaries as thin dark lines; a note when it is all zero."""
    ax.imshow(render(v, scale, overlay, opacity, edges=False), interpolation="nearest")
    if edges and v.labels is not None:
        from matplotlib.collections import LineCollection
        ax.add_collection(LineCollection(edge_segments(v.labels), colors=[EDGE_RGB], linewidths=0.7, alpha=0.8))
    if not np.any(v.map):
        ax.text(0.5, 0.5, "all values are 0", ha="center", va="center", fontsize=8, color="0.4",
                transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def add_colorbar(fig, ax, scale: Scale, label: str | None = None, shrink: float = 0.85):
    """A colour bar with the value scale (translucent colours shown over white, as in the maps)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    sm = ScalarMappable(norm=Normalize(scale.vmin, scale.vmax), cmap=listed_cmap(scale.mode))
    cb = fig.colorbar(sm, ax=ax, shrink=shrink, pad=0.02)
    cb.set_label(label or scale.label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if scale.mode == "signed":
        cb.set_ticks([scale.vmin, 0.0, scale.vmax])
        cb.set_ticklabels([f"{scale.vmin:.2g}\nlowers score", "0", f"{scale.vmax:.2g}\nraises score"])
    return cb


# ------------------------------------------------------------------------------------------ plot
def plot(attribution: Attribution, index: int = 0, *, mode: str = "signed", clip: float = 99.5,
         overlay: bool | None = None, opacity: float = 0.8, show_input: bool = True, edges: bool = True,
         colorbar: bool = True, class_names=None, feature_names: Sequence[str] | None = None,
         top: int = 20, title: str | None = None, ax=None, path=None, figsize=None, raw=None):
    """Draw sample ``index`` of ``attribution``; return the matplotlib ``Figure``.

    Images: the input (left) and the map (right) with a colour bar; ``mode`` is signed | positive |
    negative | absolute; the colour scale is symmetric ``[-s, s]``, ``s`` = the ``clip``-th percentile of
    ``|map|``. Layer-level, game and occlusion maps are laid over the grey image (``overlay``, ``opacity``); superpixel
    boundaries are drawn when the attribution has ``players`` (``edges``). Tables: a bar per feature (the
    ``top`` largest), labelled ``name = value``; ``raw`` (rows ``[N, F]`` or a function of the model's inputs)
    shows the values in raw units when the model reads standardised ones. ``ax``: draw the map into an existing
    axes. ``path``: also save the figure. Class and feature names default to the attribution's.
    """
    check_mode(mode)
    v = view(attribution, index, class_names)
    if v.kind == "table":
        names = feature_names if feature_names is not None else attribution.feature_names
        if raw is not None:
            v.image = raw_row(attribution, index, raw)
        return _plot_table(v, names, top, title, ax, path, figsize)
    if v.kind == "series":
        return _plot_series(v, mode, clip, title, ax, path, figsize)
    scale = scale_for(v.map, mode, clip)
    if ax is not None:
        draw_image_map(ax, v, scale, overlay, opacity, edges)
        ax.set_title(title or _title(v, _prob(v)), fontsize=9)
        if colorbar:
            add_colorbar(ax.figure, ax, scale)
        return ax.figure
    panels = 2 if show_input and v.image is not None else 1
    fig = new_figure(*(figsize or (3.3 * panels + 0.9, 3.6)))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if panels == 2:
        axes[0].imshow(v.image, interpolation="nearest")
        axes[0].set_title(_input_title(v, class_names), fontsize=9)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
    m_ax = axes[-1]
    draw_image_map(m_ax, v, scale, overlay, opacity, edges)
    m_ax.set_title(_title(v, _prob(v)), fontsize=9)
    if colorbar:
        add_colorbar(fig, m_ax, scale)
    if title:
        fig.suptitle(title, fontsize=10)
    if v.note:
        m_ax.set_xlabel(v.note, fontsize=7)
    return save_figure(fig, path)


def _plot_table(v: SampleView, names, top, title, ax, path, figsize):
    vals = v.map
    names = _feature_names(names, vals.size)
    order = np.argsort(-np.abs(vals))[:top][::-1]
    fig = ax.figure if ax is not None else new_figure(*(figsize or (6.0, 0.28 * len(order) + 1.4)))
    ax = ax if ax is not None else fig.subplots()
    colors = [_bar_colour(vals[i]) for i in order]
    ax.barh(range(len(order)), vals[order], color=colors)
    labels = []
    for i in order:
        lab = names[i]
        if v.image is not None:
            lab += f" = {v.image[i]:.4g}"
        labels.append(lab)
    ax.set_yticks(range(len(order)), labels, fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("attribution (red raises the score, blue lowers it)", fontsize=8)
    more = f" (top {len(order)} of {vals.size})" if vals.size > len(order) else ""
    ax.set_title(title or f"{v.method} for '{v.target_label}'{_prob(v)}{more}", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    return save_figure(fig, path)


def _plot_series(v: SampleView, mode, clip, title, ax, path, figsize):
    scale = scale_for(v.map, mode, clip)
    fig = ax.figure if ax is not None else new_figure(*(figsize or (7.0, 2.6)))
    ax = ax if ax is not None else fig.subplots()
    strip = to_rgba(v.map[None, :], scale)
    lo, hi = 0.0, 1.0
    if v.image is not None:
        sig = np.atleast_2d(v.image)
        lo, hi = float(sig.min()), float(sig.max())
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        for c in sig:
            ax.plot(np.arange(c.size), c, color="0.2", lw=1)
    ax.imshow(strip, extent=(-0.5, v.map.size - 0.5, lo, hi), aspect="auto", interpolation="nearest", zorder=0)
    ax.set_title(title or _title(v).replace("\n", " "), fontsize=9)
    add_colorbar(fig, ax, scale)
    return save_figure(fig, path)


def raw_row(a: Attribution, index: int, raw) -> np.ndarray:
    """Sample ``index``'s feature values in raw units: ``raw`` is an array ``[N, F]`` (or ``[F]`` for this one
    sample) of raw values, or a function mapping the model's inputs ``[N, F]`` to raw values (an unscaler)."""
    import torch
    n_f = int(a.values[index].numel())
    if callable(raw):
        if a.inputs is None:
            raise ValueError("raw= as a function needs the attribution's inputs, and this attribution has none")
        row = raw(a.inputs[index:index + 1])
    else:
        row = raw
    row = np.asarray(row.detach().cpu() if isinstance(row, torch.Tensor) else row, dtype=np.float64)
    if row.ndim == 2 and row.shape[0] == len(a) and not callable(raw):
        row = row[index]
    row = row.reshape(-1)
    if row.size != n_f:
        raise ValueError(f"raw values have {row.size} entries for this sample but it has {n_f} features; give raw= "
                         f"as rows [N, F] matching the explained batch, or a function of the model's inputs")
    return row


def _bar_colour(value: float):
    from .colors import BLUE, RED
    return RED if value >= 0 else BLUE


def _feature_names(names, n: int) -> list[str]:
    if names is None:
        return [f"feature {i}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"feature_names has {len(names)} names for {n} features")
    return names
