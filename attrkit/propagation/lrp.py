"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) on the gradient engine.

A composite assigns one rule per Linear/Conv layer (``rule=`` for all, or a named ``composite=`` as in Zennit:
epsilon for dense layers, z+ / alpha-beta / gamma for convolutions, flat / w^2 / z-box for the first layer).
Relevance is ``R = a * s`` where ``s`` is the modified gradient (see :mod:`attrkit.propagation.rules`);
ReLU, pooling, flatten and additions need no rule. BatchNorm is folded into the layer before it
(:class:`~attrkit.propagation.canonizers.MergeBatchNorm`); other elementwise activations and unmerged BatchNorm
pass relevance unchanged. The relevance at the output is the target score, so for conservative rules and a
network without biases ``sum R = f(x)``; the gap is reported.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from ..core.problem import Problem, Result
from ..registry import register
from .canonizers import MergeBatchNorm
from .composites import Composite, modified_gradient
from .rules import INPUT_RULES, LRP_RULES, Pass, make_rule

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS = (nn.Linear,) + _CONV
# elementwise activations whose "pass" rule differs from the plain gradient (ReLU / LeakyReLU need none)
_PASS_ACTS = (nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus,
              nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink)
_NEEDS = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "elu", "gelu", "silu", "softplus")

# name -> (dense rule, conv rule, first-layer rule)
COMPOSITES = {
    "epsilon_plus": (("epsilon", {}), ("zplus", {}), None),
    "epsilon_plus_flat": (("epsilon", {}), ("zplus", {}), ("flat", {})),
    "epsilon_plus_box": (("epsilon", {}), ("zplus", {}), ("zbox", {})),
    "epsilon_alpha2_beta1": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), None),
    "epsilon_alpha2_beta1_flat": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), ("flat", {})),
    "epsilon_gamma_box": (("epsilon", {}), ("gamma", {}), ("zbox", {})),
}


def lrp_rules(composite: str | None, rule: str | None, first: str | None, params: dict):
    """(dense rule, conv rule, first rule or None) built from the options."""
    if rule is not None and composite is not None:
        raise ValueError("give either rule= (one rule for every layer) or composite= (a named mapping), not both")
    if rule is not None:
        if rule in INPUT_RULES:
            raise ValueError(f"rule {rule!r} is meant for the first layer only; pass first={rule!r} with another "
                             "rule (or a composite) for the other layers")
        dense = conv = make_rule(rule, **params)
        first_rule = None
    else:
        name = composite or "epsilon_plus"
        if name not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {name!r}; choose from {', '.join(COMPOSITES)}")
        (dn, dp), (cn, cp), fr = COMPOSITES[name]
        dense = make_rule(dn, **{**params, **dp})
        conv = make_rule(cn, **{**params, **cp})
        first_rule = make_rule(fr[0], **{**params, **fr[1]}) if fr else None
    if first is not None:
        if first not in LRP_RULES:
            raise ValueError(f"unknown first-layer rule {first!r}; choose from {', '.join(LRP_RULES)}")
        first_rule = make_rule(first, **params)
    return dense, conv, first_rule


def lrp_composite(problem: Problem, dense, conv, first_rule, canonize: bool, stabilizer: float) -> Composite:
    canon = MergeBatchNorm() if canonize else None
    pass_rule = Pass(stabilizer)

    def assign(trace):
        merged = {bn for _, bn in canon.pairs} if canon else set()
        first = trace.first(_LAYERS) if first_rule is not None else None
        out = {}
        for _, m in trace.order:
            if m is first:
                out[m] = first_rule
            elif isinstance(m, nn.Linear):
                out[m] = dense
            elif isinstance(m, _CONV):
                out[m] = conv
            elif isinstance(m, _PASS_ACTS) or (isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in merged):
                out[m] = pass_rule
        return out

    return Composite(problem.model, assign, example=problem.inputs[:1], canonizers=[canon] if canon else [],
                     needs=_NEEDS, method="lrp")


def check_lrp_params(params: dict) -> None:
    """Refuse parameters that make relevance NaN or meaningless, where they enter (before any hook is set)."""
    for key, low_ok in (("epsilon", 0.0), ("alpha", 0.0), ("beta", 0.0), ("gamma", 0.0), ("stabilizer", None)):
        v = params.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or (v < low_ok if low_ok is not None else v <= 0):
            need = f">= {low_ok:g} (a finite number)" if low_ok is not None else \
                "> 0 (a finite number: it keeps every denominator away from zero)"
            raise ValueError(f"LRP {key} must be {need}, got {v!r}")
    low, high = params.get("low"), params.get("high")
    bounds = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in (("low", low), ("high", high)) if v is not None}
    for k, t in bounds.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"z-box bound {k} must be finite, got {params[k]!r}")
    if len(bounds) == 2:
        try:
            wrong = bool((bounds["low"] > bounds["high"]).any())
        except RuntimeError:
            wrong = False                   # shapes that do not broadcast are reported against the input later
        if wrong:
            raise ValueError("z-box bounds need low <= high (the smallest and largest value each input element can "
                             f"take), got low={low!r} > high={high!r} somewhere; swap them")


@register("lrp", family="propagation",
          summary="layer-wise relevance propagation: rules epsilon/zplus/alpha_beta/gamma/flat/wsquare/zbox, "
                  "named composites, BatchNorm folded",
          reference="Bach et al. 2015; Montavon et al. 2017, 2019", error="completeness_gap")
def lrp(problem: Problem, composite: str | None = None, rule: str | None = None, first: str | None = None,
        epsilon: float = 1e-6, alpha: float | None = None, beta: float | None = None, gamma: float | None = None,
        low=None, high=None, stabilizer: float = 1e-6, canonize: bool = True) -> Result:
    """Relevance at the input (or at ``layer``), summing to the target output for conservative rules.

    rule: one rule for every Linear/Conv layer ("epsilon", "zero", "zplus", "alpha_beta", "gamma").
    composite: "epsilon_plus" (default), "epsilon_plus_flat", "epsilon_plus_box", "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat", "epsilon_gamma_box". first: rule for the first layer ("flat", "wsquare", "zbox"
    with ``low``/``high`` input bounds, default each sample's min/max; or any other rule).
    """
    params = {"epsilon": epsilon, "alpha": alpha, "beta": beta, "gamma": gamma, "low": low, "high": high,
              "stabilizer": stabilizer}
    check_lrp_params(params)
    if alpha is not None and beta is None:
        params["beta"] = alpha - 1.0
    elif beta is not None and alpha is None:
        params["alpha"] = beta + 1.0
    dense, conv, first_rule = lrp_rules(composite, rule, first, params)
    comp = lrp_composite(problem, dense, conv, first_rule, canonize, stabilizer)
    x = problem.inputs
    at_layer = problem.layer is not None
    with comp:
        grad, n = modified_gradient(problem, comp, desc="lrp")
        base = problem.activation(x) if at_layer else x
        input_rule = getattr(comp.rules.get(comp.trace.first(_LAYERS)), "returns_relevance", False)
        rules = comp.names()
        merged = comp.canonizers[0].merged({m: k for k, m in problem.model.named_modules()}) if canonize else []
    values = grad if (input_rule and not at_layer) else grad * base
    rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, rows).detach()
    total = values.reshape(problem.n, -1).sum(1)
    info = {"n_evals": n + 1 + (problem.n if at_layer else 0), "rules": rules, "canonized": merged,
            "composite": None if rule is not None else (composite or "epsilon_plus"),
            "relevance_sum": total, "f_x": f_x, "completeness_gap": (total - f_x).abs()}
    return Result(values, info)
