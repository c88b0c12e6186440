"""Compatibility layers: run Captum- and SHAP-style code on attrkit's engines by changing one import.

``from attrkit.compat import captum as attr`` gives Captum's classes (``attr.IntegratedGradients(model)
.attribute(...)``); ``attrkit.compat.shap`` gives SHAP's explainers; ``attrkit.compat.visualization`` gives
``captum.attr.visualization``'s two plotting helpers. None of them imports Captum or SHAP to compute anything.
See docs/migrating.md.
"""
import importlib

__all__ = ["captum", "shap", "visualization"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
