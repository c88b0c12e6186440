"""Modified backward rules (DeconvNet, Guided Backprop, LRP, DeepLIFT).

Rules are bound to call sites of the model's torch.fx graph by a :class:`Composite` for one call (module hooks for
models torch.fx cannot trace; always removed); the methods run the gradient engine under them. The class activation
maps live in :mod:`attrkit.cams`.
"""
from .canonizers import Canonizer, MergeBatchNorm
from .composites import Composite, modified_gradient, run_rules
from .lrp_composites import COMPOSITES as LRP_COMPOSITES, LRPComposite
from .graph import Site
from .rules import (AlphaBeta, DeconvReLU, Epsilon, Flat, Gamma, Gate, GuidedReLU, NormIdentity, Pass, Rule, WSquare,
                    ZBox, Zero, ZPlus, layer_params, make_rule)

__all__ = ["Composite", "modified_gradient", "run_rules", "Canonizer", "MergeBatchNorm", "last_conv", "LRP_COMPOSITES",
           "LRPComposite", "Rule", "Epsilon", "Zero", "ZPlus", "AlphaBeta", "Gamma", "Flat", "WSquare", "ZBox", "Pass",
           "GuidedReLU", "DeconvReLU", "make_rule", "layer_params", "NormIdentity", "Gate", "Site"]


def __getattr__(name):
    """``last_conv`` moved to :mod:`attrkit.cams`; still importable from here (loaded on use: the CAMs import
    this package's guided-backpropagation rule)."""
    if name == "last_conv":
        from ..cams.cam import last_conv
        return last_conv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
