"""DeconvNet and Guided Backpropagation: the gradient with a modified backward rule at each rectifier call.

DeconvNet (Zeiler & Fergus 2014): ``g_in = relu(g_out)``. Guided Backpropagation (Springenberg et al. 2015):
``g_in = f'(z) * relu(g_out)`` (for ReLU ``relu(g_out) * 1[z > 0]``). The rule is bound to every call of a
rectifying activation (ReLU, ReLU6, LeakyReLU, PReLU, ELU, SELU, CELU, GELU, SiLU, Mish, Softplus, Hardswish;
modules, reused modules and functions alike, see :mod:`attrkit.propagation.graph`). A model without any is
refused: the result would be the plain gradient.
"""
from __future__ import annotations


from ..core.problem import Problem, Result
from ..registry import register
from .composites import Composite, run_rules
from .graph import _MODULE_KINDS, RECTIFIERS
from .rules import DeconvReLU, GuidedReLU

_HOOKABLE = tuple(t for t, k in _MODULE_KINDS if k in RECTIFIERS)


def relu_composite(problem: Problem, rule, method: str) -> Composite:
    """A composite putting ``rule`` on every rectifier call of the model; refuses a model with none."""

    def assign(binding):
        rules = {s: rule for s in binding.order if s.kind in RECTIFIERS}
        if not rules:
            found = sorted({s.kind for s in binding.order if s.kind and s.kind not in
                            ("linear", "conv", "batch_norm", "layer_norm", "max_pool", "mul")})
            raise ValueError(
                f"{method} modifies the backward pass at rectifying activations (ReLU, LeakyReLU, PReLU, ELU, GELU, "
                f"SiLU, Softplus, Hardswish ...), and this model has none"
                f"{' (its nonlinearities: ' + ', '.join(found) + ')' if found else ''}; the result would be the "
                "plain gradient — use method='saliency' for that")
        return rules

    return Composite(problem.model, assign, example=problem.inputs[:1], needs=("relu",), unique=_HOOKABLE,
                     method=method, layer=problem.layer)


def relu_rule_gradient(problem: Problem, rule, method: str):
    grad, n, bound = run_rules(problem, relu_composite(problem, rule, method), desc=method)
    return grad, {"n_evals": n, "rules": bound["rules"], "binding": bound["binding"]}


@register("guided_backprop", family="propagation",
          summary="gradient with rectifier backward f'(z) relu(g) (ReLU: relu(g) * 1[z > 0]) at every call",
          reference="Springenberg et al. 2015")
def guided_backprop(problem: Problem) -> Result:
    """Guided Backpropagation: only positive gradients pass rectifiers, and only where the ReLU was active."""
    grad, info = relu_rule_gradient(problem, GuidedReLU(), "guided_backprop")
    return Result(grad, info)


@register("deconvnet", family="propagation", summary="gradient with rectifier backward relu(g) (DeconvNet)",
          reference="Zeiler & Fergus 2014")
def deconvnet(problem: Problem) -> Result:
    """DeconvNet: rectifiers pass the rectified gradient regardless of the forward activation."""
    grad, info = relu_rule_gradient(problem, DeconvReLU(), "deconvnet")
    return Result(grad, info)
