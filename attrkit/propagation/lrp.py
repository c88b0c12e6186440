"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) on the gradient engine.

A composite (:class:`~attrkit.propagation.lrp_composites.LRPComposite`) assigns one rule per call site (``rule=`` for
every Linear/Conv layer, or a ``composite=`` as in Zennit: epsilon for dense layers, z+ / alpha-beta / gamma for
convolutions, flat / w^2 / z-box for the first layer). Relevance is ``R = a * s`` where ``s`` is the modified
gradient (see :mod:`attrkit.propagation.rules`), from one forward and one backward pass per chunk (the activation
``a`` at ``layer`` comes from that pass); ReLU, pooling, flatten and additions need no rule. BatchNorm is folded into the layer before it
(:class:`~attrkit.propagation.canonizers.MergeBatchNorm`); other elementwise activations and unmerged BatchNorm
pass relevance unchanged. The relevance at the output is the target score, so for conservative rules and a
network without biases ``sum R = f(x)``; the gap is reported.
"""
from __future__ import annotations

import math
import numbers
import warnings

import torch

from ..core.problem import Problem, Result
from ..registry import register
from .canonizers import MergeBatchNorm
from .composites import Composite, run_rules
from .lrp_composites import LRPComposite, lrp_composite
from .rules import Rule
from .precision import with_precision_note, float32_problem

_NEEDS = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "elu", "gelu", "silu", "softplus", "hardswish",
          "hardsigmoid", "mish")


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
def lrp(problem: Problem, composite: str | dict | LRPComposite | None = None, rule: str | Rule | None = None,
        first: str | Rule | None = None, epsilon: float = 1e-6, alpha: float | None = None, beta: float | None = None,
        gamma: float | None = None, low=None, high=None, stabilizer: float = 1e-6, canonize: bool = True,
        canonizers=None) -> Result:
    """Relevance at the input (or at ``layer``), summing to the target output for conservative rules.

    rule: one rule for every Linear/Conv layer (a name, "epsilon", "zero", "zplus", "alpha_beta", "gamma", or a
    Rule object). composite: "epsilon_plus" (default), "epsilon_plus_flat", "epsilon_plus_box",
    "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box", an ``LRPComposite``, a dict
    {"linear" / "conv" / "first" / a site kind / a site name / a module class: rule} or a callable site -> rule
    (see docs/extending.md). first: rule for the first layer ("flat", "wsquare", "zbox" with ``low``/``high``
    input bounds, default each sample's min/max; or any other rule). Rule names take their parameters from the
    options (``epsilon``, ``gamma`` ...). canonizers: a list of ``Canonizer`` objects replacing the default
    ``[MergeBatchNorm()]`` (``canonize=False``: none). Rules are bound to call sites of the traced graph (reused
    modules and functional activations get their own); ``info["binding"]`` says how.
    """
    params = {"epsilon": epsilon, "alpha": alpha, "beta": beta, "gamma": gamma, "low": low, "high": high,
              "stabilizer": stabilizer}
    check_lrp_params(params)
    if alpha is not None and beta is None:
        params["beta"] = alpha - 1.0
    elif beta is not None and alpha is None:
        params["alpha"] = beta + 1.0
    rules = lrp_composite(composite, rule, first, params)
    problem, precision = float32_problem(problem, "lrp")
    canons = list(canonizers) if canonizers is not None else ([MergeBatchNorm()] if canonize else [])
    comp = Composite(problem.model, rules.assign, example=problem.inputs[:1], canonizers=canons, needs=_NEEDS,
                     method="lrp", layer=problem.layer)
    x = problem.inputs
    at_layer = problem.layer is not None
    acts = [] if at_layer else None
    grad, n, bound = run_rules(problem, comp, desc="lrp", activations=acts)   # one pass: gradient and activation
    base = torch.cat(acts) if at_layer else x
    unmerged, binding = bound["batchnorm_layers"], bound["binding"]
    if unmerged and binding != "graph":
        warnings.warn(f"lrp: {len(unmerged)} BatchNorm layer(s) ({', '.join(unmerged[:3])}"
                      f"{' ...' if len(unmerged) > 3 else ''}) were not folded into the layer before them and get "
                      f"the pass rule, because {binding[len('module hooks ('):-1]}; make the model traceable (or "
                      "put each layer and its BatchNorm in one nn.Sequential) to fold them", stacklevel=2)
    values = grad if (bound["returns_relevance"] and not at_layer) else grad * base
    n_rows = x.shape[0]
    f_x = problem.target(problem.outputs, torch.arange(n_rows)).detach()
    total = values.reshape(n_rows, -1).sum(1)
    info = {"n_evals": n, "rules": bound["rules"], "canonized": bound["canonized"], "batchnorm_layers": unmerged,
            "binding": binding, "composite": rules.name,
            "relevance_sum": total, "f_x": f_x, "completeness_gap": (total - f_x).abs(),
            # the share of f(x) the input relevance does not carry: biases (and folded BatchNorm shifts) absorb it;
            # on a bias-free network only the stabilisers and z+ neurons without positive input do
            "bias_share": 1 - total / torch.where(f_x == 0, torch.ones_like(f_x), f_x)}
    return with_precision_note(Result(values, info), precision)
