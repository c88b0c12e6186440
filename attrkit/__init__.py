"""attrkit: attributions for PyTorch models — which inputs, pixels, superpixels or hidden units made the
model say what it said, and how far to trust that answer.

>>> import attrkit as ak
>>> "integrated_gradients" in ak.methods()
True
"""
import importlib

from .api import explain
from .attribution import Attribution
from .importance import Importance, global_importance
from .registry import methods, validate

__version__ = "0.1.0"

# Names loaded on first use, so `import attrkit` needs only torch and numpy.
_LAZY = {
    "features": "attrkit.games", "grid": "attrkit.games", "superpixels": "attrkit.games",
    "Game": "attrkit.games", "Masker": "attrkit.games", "Background": "attrkit.games",
    "plot": "attrkit.viz", "plot_grid": "attrkit.viz", "plot_curves": "attrkit.viz",
    "plot_cascade": "attrkit.viz", "plot_importance": "attrkit.viz", "plot_beeswarm": "attrkit.viz",
    "plot_waterfall": "attrkit.viz",
    "report": "attrkit.html_report",
    "run": "attrkit.runs", "load_run": "attrkit.runs",
    "summary": "attrkit.model_summary",
    "loss_landscape": "attrkit.landscape", "Landscape": "attrkit.landscape", "plot_landscape": "attrkit.viz",
}
_SUBMODULES = ("data", "models", "train", "zoo", "metrics", "experiments", "lecture_numpy", "viz", "games", "runs",
               "propagation", "cams", "gradients")

__all__ = ["explain", "Attribution", "methods", "validate", "global_importance", "Importance", "__version__",
           *_LAZY, *_SUBMODULES]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"attrkit.{name}")
    raise AttributeError(f"module 'attrkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
