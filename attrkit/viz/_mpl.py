"""Lazy matplotlib: figures are built with ``matplotlib.figure.Figure`` (Agg canvas, no GUI, no global state)."""
from __future__ import annotations

from pathlib import Path


def mpl():
    """Import matplotlib (non-interactive Agg canvas) or say how to get it."""
    try:
        import matplotlib
    except ImportError as err:   # pragma: no cover - depends on the environment
        raise ImportError("attrkit's plots need matplotlib; install it with "
                          "`pip install 'attrkit[report]'` (or `pip install matplotlib`)") from err
    return matplotlib


def new_figure(width: float, height: float):
    """A figure on an Agg canvas (pyplot is never imported, so no window opens and nothing leaks)."""
    mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def listed_cmap(mode: str):
    from matplotlib.colors import ListedColormap
    from .colors import colormap_table
    return ListedColormap(colormap_table(256, mode), name=f"attrkit_{mode}")


def save_figure(fig, path=None, dpi: int = 120):
    """Save ``fig`` to ``path`` (any format matplotlib knows, by suffix) when given; return ``fig``."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, facecolor="white")
    return fig
