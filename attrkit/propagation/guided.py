"""DeconvNet and Guided Backpropagation: the gradient with a modified ReLU backward rule.

DeconvNet (Zeiler & Fergus 2014): ``g_in = relu(g_out)``. Guided Backpropagation (Springenberg et al. 2015):
``g_in = relu(g_out) * 1[z > 0]``. Both need every ReLU to be its own ``nn.ReLU`` module, called once per
forward pass; functional ``F.relu`` / reused modules are refused.
"""
from __future__ import annotations

from torch import nn

from ..core.problem import Problem, Result
from ..registry import register
from .composites import Composite, modified_gradient
from .rules import DeconvReLU, GuidedReLU


def relu_composite(problem: Problem, rule, method: str) -> Composite:
    """A composite putting ``rule`` on every ``nn.ReLU`` of the model."""
    return Composite(problem.model, lambda tr: {m: rule for _, m in tr.order if isinstance(m, nn.ReLU)},
                     example=problem.inputs[:1], needs=("relu",), unique=(nn.ReLU,), method=method)


def relu_rule_gradient(problem: Problem, rule, method: str):
    comp = relu_composite(problem, rule, method)
    with comp:
        grad, n = modified_gradient(problem, comp, desc=method)
        rules = comp.names()
    return grad, {"n_evals": n + 1, "rules": rules}


@register("guided_backprop", family="propagation", summary="gradient with ReLU backward relu(g) * 1[z > 0]",
          reference="Springenberg et al. 2015")
def guided_backprop(problem: Problem) -> Result:
    """Guided Backpropagation: only positive gradients pass ReLUs, and only where the ReLU was active."""
    grad, info = relu_rule_gradient(problem, GuidedReLU(), "guided_backprop")
    return Result(grad, info)


@register("deconvnet", family="propagation", summary="gradient with ReLU backward relu(g) (DeconvNet)",
          reference="Zeiler & Fergus 2014")
def deconvnet(problem: Problem) -> Result:
    """DeconvNet: ReLUs pass the rectified gradient regardless of the forward activation."""
    grad, info = relu_rule_gradient(problem, DeconvReLU(), "deconvnet")
    return Result(grad, info)
