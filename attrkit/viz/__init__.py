"""Pictures of attributions (matplotlib, imported only when a plot is drawn; ``pip install 'attrkit[report]'``).

- ``plot(attribution, index=0)``: one sample's map in the thesis' colours (red raises the target's score,
  blue lowers it, clear = no effect), with the input beside it and a colour bar; layer-level maps over the
  grey image; tabular attributions as bars.
- ``plot_grid(attributions, rows="method", cols="target")``: the thesis' Figure 3.1 layout.
- ``plot_curves`` (deletion/insertion), ``plot_cascade`` (sanity checks), ``plot_importance``,
  ``plot_beeswarm``, ``plot_waterfall`` (tables), ``plot_landscape`` (``ak.loss_landscape``: curve, contour,
  surface).
- ``colors``: the colour scheme in NumPy (``scale_for``, ``to_rgba``), shared with the HTML report.

Every function returns a ``matplotlib.figure.Figure`` (pyplot is never imported); ``path=`` also saves it.
"""
from .colors import MODES, Scale, scale_for, to_rgba
from .curves import plot_cascade, plot_curves
from .grid import plot_grid
from .heatmaps import plot
from .landscape import plot_landscape
from .maps import SampleView, view
from .tabular import plot_beeswarm, plot_importance, plot_waterfall

__all__ = ["plot", "plot_grid", "plot_curves", "plot_cascade", "plot_importance", "plot_beeswarm",
           "plot_waterfall", "plot_landscape", "scale_for", "to_rgba", "Scale", "MODES", "view", "SampleView"]
