"""attrkit: attributions for PyTorch models — which inputs, pixels, superpixels or hidden units made the
model say what it said, and how far to trust that answer.

>>> import attrkit as ak
>>> "integrated_gradients" in ak.methods()
True
"""
from .api import explain
from .attribution import Attribution
from .importance import Importance, global_importance
from .registry import methods

__version__ = "0.1.0"

__all__ = ["explain", "Attribution", "methods", "global_importance", "Importance", "__version__"]
