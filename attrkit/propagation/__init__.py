"""Modified backward rules (DeconvNet, Guided Backprop, LRP, DeepLIFT) and class activation maps.

Rules are bound to call sites of the model's torch.fx graph by a :class:`Composite` for one call (module hooks for
models torch.fx cannot trace; always removed); the methods run the gradient engine under them. CAMs combine a layer's activations with
its gradients or with batched forwards.
"""
from .canonizers import Canonizer, MergeBatchNorm
from .cam import last_conv
from .composites import Composite, modified_gradient
from .lrp_composites import COMPOSITES as LRP_COMPOSITES, LRPComposite
from .graph import Site
from .rules import (AlphaBeta, DeconvReLU, Epsilon, Flat, Gamma, Gate, GuidedReLU, NormIdentity, Pass, Rule, WSquare,
                    ZBox, Zero, ZPlus, make_rule)

__all__ = ["Composite", "modified_gradient", "Canonizer", "MergeBatchNorm", "last_conv", "LRP_COMPOSITES",
           "LRPComposite", "Rule", "Epsilon", "Zero", "ZPlus", "AlphaBeta", "Gamma", "Flat", "WSquare", "ZBox", "Pass", "GuidedReLU",
           "DeconvReLU", "make_rule", "NormIdentity", "Gate", "Site"]
