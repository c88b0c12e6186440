"""Pictures of a loss landscape (:func:`attrkit.loss_landscape`): the 1-D curve, the 2-D contour map and the
3-D surface (Li et al. 2018, figures 1 and 5)."""
from __future__ import annotations

import numpy as np

from ._mpl import save_figure, new_figure

KINDS = ("auto", "curve", "contour", "surface", "both")


def plot_landscape(ls, kind: str = "auto", *, title: str | None = None, path=None, log: bool = False,
                   figsize=None):
    """``kind``: "auto" (a curve for one direction, contour and surface for two), "curve", "contour",
    "surface" or "both". ``log`` draws ``log10`` of the loss (deep minima show their shape). The trained
    weights (the origin) are marked. Returns the matplotlib ``Figure``; ``path`` also saves it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "auto":
        kind = "curve" if ls.betas is None else "both"
    if ls.betas is None and kind != "curve":
        raise ValueError(f"a landscape along one direction is a curve; kind={kind!r} needs directions=2")
    if ls.betas is not None and kind == "curve":
        raise ValueError("this landscape has two directions: draw kind='contour', 'surface' or 'both'")
    z = np.log10(np.maximum(ls.loss, 1e-12)) if log else ls.loss
    zlabel = f"log10 {ls.loss_name} loss" if log else f"{ls.loss_name} loss"
    head = title or f"loss landscape ({_how(ls)})"
    if kind == "curve":
        fig = new_figure(*(figsize or (5.2, 3.6)))
        ax = fig.subplots()
        ax.plot(ls.alphas, z, color="#b2182b", lw=1.6)
        c = np.log10(max(ls.center, 1e-12)) if log else ls.center
        ax.plot([0.0], [c], "o", color="black", ms=5, label=f"trained weights ({ls.center:.3g})")
        ax.set_xlabel("alpha (step along the direction)", fontsize=9)
        ax.set_ylabel(zlabel, fontsize=9)
        ax.legend(fontsize=8, loc="upper center")
        ax.tick_params(labelsize=8)
        ax.set_title(head, fontsize=10)
        return save_figure(fig, path)
    panels = 2 if kind == "both" else 1
    fig = new_figure(*(figsize or (5.0 * panels + 0.4, 4.4)))
    a, b = np.meshgrid(ls.alphas, ls.betas, indexing="ij")
    k = 1
    if kind in ("contour", "both"):
        ax = fig.add_subplot(1, panels, k)
        k += 1
        filled = ax.contourf(a, b, z, levels=20, cmap="viridis")
        ax.contour(a, b, z, levels=20, colors="white", linewidths=0.4, alpha=0.6)
        ax.plot([0.0], [0.0], "x", color="red", ms=8, mew=2)
        cb = fig.colorbar(filled, ax=ax, shrink=0.85)
        cb.set_label(zlabel, fontsize=8)
        cb.ax.tick_params(labelsize=7)
        ax.set_xlabel("alpha (direction 1)", fontsize=9)
        ax.set_ylabel("beta (direction 2)", fontsize=9)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
        ax.set_title("contours (x: trained weights)", fontsize=9)
    if kind in ("surface", "both"):
        ax = fig.add_subplot(1, panels, k, projection="3d")
        ax.plot_surface(a, b, z, cmap="viridis", linewidth=0, antialiased=True, rcount=60, ccount=60)
        ax.set_xlabel("alpha", fontsize=8)
        ax.set_ylabel("beta", fontsize=8)
        ax.set_zlabel(zlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title("surface", fontsize=9)
    fig.suptitle(head, fontsize=10)
    return save_figure(fig, path)


def _how(ls) -> str:
    norm = {"filter": "filter-normalised", "layer": "layer-normalised", "none": "raw"}.get(ls.info.get("norm"), "")
    return f"{norm} random direction{'s' if ls.betas is not None else ''}, seed {ls.info.get('seed')}"
