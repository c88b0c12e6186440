"""``plot_grid``: the thesis' Figure 3.1 layout (methods x classes x layers), or a near-square grid of panels
when only one key varies."""
from __future__ import annotations

import numpy as np

from ..attribution import Attribution
from ._mpl import save_figure, new_figure
from .colors import check_mode, scale_for, shared_scale
from .heatmaps import _input_title, add_colorbar, draw_image_map
from .maps import SampleView, view


KEYS = ("method", "target", "layer", "sample")


def _key(v: SampleView, sample: int, key) -> str:
    keys = (key,) if isinstance(key, str) else tuple(key)
    parts = []
    for k in keys:
        if k not in KEYS:
            raise ValueError(f"grid keys are {', '.join(KEYS)}; got {k!r}")
        parts.append({"method": v.method, "target": v.target_label, "layer": v.layer or "pixels",
                      "sample": f"sample {sample}"}[k])
    return " / ".join(parts)


def plot_grid(attributions, rows="method", cols="target", *, index=0, mode: str = "signed",
              clip: float = 99.5, scale: str = "each", overlay: bool | None = None, opacity: float = 0.8,
              show_input: bool = True, edges: bool = True, class_names=None, cell: float = 2.2,
              title: str | None = None, path=None, wrap: bool | None = None):
    """A grid of heatmaps (the thesis' Figure 3.1: methods x classes x layers).

    ``attributions``: a list of ``Attribution`` (or a dict ``label -> Attribution``); each sample ``index``
    (an int, a list, or None for all) of each becomes a cell placed by ``rows`` and ``cols``, each one of
    "method", "target", "layer", "sample" or a tuple of them (Figure 3.1: ``rows=("layer", "target"),
    cols="method"``). A nested list (rows of attributions) is laid out as given.
    ``scale``: "each" (each map spans its own ``±s``, printed under it), "row", "col" or "all" (shared, with
    a colour bar). ``show_input`` adds a first column with each row's input image.
    ``wrap``: when only one key varies (e.g. many methods, one class), lay the maps out as a near-square grid of
    panels instead of one tall column (None: when there would be more than 3 rows in one column or more than 5
    columns in one row).
    """
    check_mode(mode)
    if scale not in ("each", "row", "col", "all"):
        raise ValueError(f"scale must be 'each', 'row', 'col' or 'all', got {scale!r}")
    cells, row_keys, col_keys = _layout(attributions, rows, cols, index, class_names)
    if not cells:
        raise ValueError("plot_grid needs at least one attribution")
    if any(v.kind not in ("image", "volume") for v in cells.values()):
        raise ValueError("plot_grid draws image attributions; plot tabular ones with plot() or plot_importance()")
    nr, nc = len(row_keys), len(col_keys)
    scales = _scales(cells, row_keys, col_keys, scale, mode, clip)
    if wrap is None:            # a layout asked for with compound keys (Figure 3.1) is kept as it is
        wrap = isinstance(rows, str) and isinstance(cols, str) and ((nc == 1 and nr > 3) or (nr == 1 and nc > 5))
    if wrap and (nc == 1 or nr == 1):     # one varying key: a grid of panels, not a tall column or a long row
        return _plot_wrapped(cells, row_keys, col_keys, scales, scale, mode, show_input, overlay, opacity, edges,
                             class_names, cell, title, path, rows, cols)
    inputs = show_input and any(v.image is not None for v in cells.values())
    extra = 1 if inputs else 0
    bar = scale != "each"
    fig = new_figure(cell * (nc + extra) + (0.9 if bar else 0.2) + 0.9, cell * nr + 0.9 + (0.4 if title else 0))
    axes = fig.subplots(nr, nc + extra, squeeze=False)
    shown = None
    for r, rk in enumerate(row_keys):
        first = next((cells[(rk, ck)] for ck in col_keys if (rk, ck) in cells), None)
        if inputs:
            ax = axes[r, 0]
            ax.set_xticks([])
            ax.set_yticks([])
            if first is not None and first.image is not None and \
                    (shown is None or not np.array_equal(shown, first.image)):
                ax.imshow(first.image, interpolation="nearest")
                ax.set_title(_input_title(first, class_names), fontsize=8)
                shown = first.image
            else:
                for side in ax.spines.values():
                    side.set_visible(False)
            ax.set_ylabel(rk, fontsize=8)
        for c, ck in enumerate(col_keys):
            ax = axes[r, c + extra]
            ax.set_xticks([])
            ax.set_yticks([])
            v = cells.get((rk, ck))
            if v is None:
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", fontsize=7, color="0.5",
                        transform=ax.transAxes)
                ax.set_frame_on(False)
            else:
                sc = scales[(rk, ck)]
                draw_image_map(ax, v, sc, overlay, opacity, edges)
                if scale == "each":
                    ax.set_xlabel(f"±{sc.limit:.2g}" if mode == "signed" else f"max {sc.limit:.2g}", fontsize=7)
            if r == 0:
                ax.set_title(ck, fontsize=8)
            if c == 0 and not inputs:
                ax.set_ylabel(rk, fontsize=8)
        if scale == "row" and any((rk, ck) in cells for ck in col_keys):
            add_colorbar(fig, list(axes[r, extra:]), scales[next((rk, ck) for ck in col_keys if (rk, ck) in cells)])
    if scale == "col":
        for c, ck in enumerate(col_keys):
            key = next(((rk, ck) for rk in row_keys if (rk, ck) in cells), None)
            if key is not None:
                add_colorbar(fig, list(axes[:, c + extra]), scales[key], shrink=0.6)
    if scale == "all":
        add_colorbar(fig, list(axes[:, extra:].ravel()), next(iter(scales.values())), shrink=0.6)
    fig.supxlabel(_legend(scale, fig.get_figwidth()), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _legend(scale: str, width_in: float) -> str:
    """The colour legend, wrapped to the figure's width (never clipped at its edges)."""
    import textwrap
    parts = ["red: raises the class score", "blue: lowers it", "clear: no effect"]
    if scale == "each":
        parts.append("each map scaled to its own ±max (printed under it)")
    return textwrap.fill(" · ".join(parts), width=max(30, int(width_in * 15)))


def _plot_wrapped(cells, row_keys, col_keys, scales, scale, mode, show_input, overlay, opacity, edges,
                  class_names, cell, title, path, rows, cols):
    """The maps of one varying key as a near-square grid of titled panels (the input image first)."""
    import math
    keys = [(rk, ck) for rk in row_keys for ck in col_keys if (rk, ck) in cells]
    vary = 0 if len(row_keys) > 1 else 1
    first = cells[keys[0]]
    inputs = show_input and first.image is not None and all(
        cells[k].image is None or np.array_equal(cells[k].image, first.image) for k in keys)
    n = len(keys) + (1 if inputs else 0)
    ncols = min(n, max(2, math.ceil(math.sqrt(n * 1.3))))
    nrows = math.ceil(n / ncols)
    bar = scale != "each"
    fig = new_figure(cell * ncols + (0.9 if bar else 0.2) + 0.3, (cell + 0.45) * nrows + 0.9 + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    k0 = 0
    if inputs:
        axes[0].imshow(first.image, interpolation="nearest")
        axes[0].set_title(_input_title(first, class_names), fontsize=8)
        k0 = 1
    common = col_keys[0] if vary == 0 else row_keys[0]
    what = cols if vary == 0 else rows
    common = f"{what if isinstance(what, str) else ' / '.join(what)}: {common}"
    for ax, key in zip(axes[k0:], keys):
        v, sc = cells[key], scales[key]
        draw_image_map(ax, v, sc, overlay, opacity, edges)
        ax.set_title(key[vary], fontsize=8)
        if scale == "each":
            ax.set_xlabel(f"±{sc.limit:.2g}" if mode == "signed" else f"max {sc.limit:.2g}", fontsize=7)
    for ax in axes[k0 + len(keys):]:
        ax.set_axis_off()
    if bar:
        add_colorbar(fig, list(axes[k0:k0 + len(keys)]), next(iter(scales.values())), shrink=0.6)
    fig.supxlabel(_legend(scale, fig.get_figwidth()), fontsize=8)
    fig.suptitle(title or common, fontsize=10 if title else 9)
    return save_figure(fig, path)


def _layout(attributions, rows, cols, index, class_names):
    """-> ({(row_key, col_key): SampleView}, ordered row keys, ordered col keys)."""
    cells: dict = {}
    row_keys: list = []
    col_keys: list = []

    def put(rk, ck, v):
        if (rk, ck) in cells:
            raise ValueError(f"two maps fall in the cell row {rk!r}, column {ck!r}; add a key to rows= or "
                             f"cols= (e.g. rows=('method', 'layer')) or pass fewer attributions")
        cells[(rk, ck)] = v
        if rk not in row_keys:
            row_keys.append(rk)
        if ck not in col_keys:
            col_keys.append(ck)

    if isinstance(attributions, Attribution):
        attributions = [attributions]
    labels = {}
    if isinstance(attributions, dict):                   # label -> Attribution: the label names the method
        labels = {id(a): str(k) for k, a in attributions.items()}
        attributions = list(attributions.values())
    attributions = list(attributions)
    if attributions and all(isinstance(r, (list, tuple)) for r in attributions):   # explicit layout
        i = index if isinstance(index, int) else 0
        grid = [[None if a is None else view(a, i, class_names) for a in row] for row in attributions]
        width = max(len(row) for row in grid)
        col_labels = []
        for c in range(width):
            v = next((row[c] for row in grid if c < len(row) and row[c] is not None), None)
            col_labels.append(_unique(_key(v, i, cols) if v is not None else f"column {c}", col_labels))
        for r, row in enumerate(grid):
            v = next((x for x in row if x is not None), None)
            rk = _unique(_key(v, i, rows) if v is not None else f"row {r}", row_keys)
            row_keys.append(rk)
            for c, v in enumerate(row):
                if v is not None:
                    cells[(rk, col_labels[c])] = v
        return cells, row_keys, col_labels
    for a in attributions:
        if not isinstance(a, Attribution):
            raise TypeError(f"plot_grid takes Attribution objects, got {type(a).__name__}")
        idx = range(len(a)) if index is None else [index] if isinstance(index, int) else list(index)
        for i in idx:
            v = view(a, i, class_names)
            if id(a) in labels:
                v.method = labels[id(a)]
            put(_key(v, i, rows), _key(v, i, cols), v)
    return cells, row_keys, col_keys


def _scales(cells, row_keys, col_keys, how, mode, clip) -> dict:
    if how == "each":
        return {k: scale_for(v.map, mode, clip) for k, v in cells.items()}
    if how == "all":
        s = shared_scale([v.map for v in cells.values()], mode, clip)
        return {k: s for k in cells}
    out = {}
    groups = row_keys if how == "row" else col_keys
    for g in groups:
        members = [k for k in cells if (k[0] if how == "row" else k[1]) == g]
        s = shared_scale([cells[k].map for k in members], mode, clip)
        out.update({k: s for k in members})
    return out


def _unique(label: str, taken: list) -> str:
    out, k = label, 2
    while out in taken:
        out, k = f"{label} ({k})", k + 1
    return out
