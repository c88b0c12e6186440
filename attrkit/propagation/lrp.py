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
import warnings

import torch

from ..core.problem import Problem, Result
from ..registry import register
from .canonizers import MergeBatchNorm
from .composites import Composite, modified_gradient
from .graph import ACTIVATIONS, SOFTMAX
from .precision import finish, float32_problem
from .rules import INPUT_RULES, LRP_RULES, Epsilon, Gate, NormIdentity, Pass, Rule, make_rule

_NEEDS = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "elu", "gelu", "silu", "softplus", "hardswish",
          "hardsigmoid", "mish")

# name -> (dense rule, conv rule, first-layer rule)
COMPOSITES = {
    "epsilon_plus": (("epsilon", {}), ("zplus", {}), None),
    "epsilon_plus_flat": (("epsilon", {}), ("zplus", {}), ("flat", {})),
    "epsilon_plus_box": (("epsilon", {}), ("zplus", {}), ("zbox", {})),
    "epsilon_alpha2_beta1": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), None),
    "epsilon_alpha2_beta1_flat": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), ("flat", {})),
    "epsilon_gamma_box": (("epsilon", {}), ("gamma", {}), ("zbox", {})),
}


def _as_rule(spec, params: dict, what: str):
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        return make_rule(spec, **params)
    raise TypeError(f"{what} must be a rule name ({', '.join(LRP_RULES)}) or an attrkit.propagation.Rule object, "
                    f"got {type(spec).__name__}")


def lrp_rules(composite, rule, first, params: dict):
    """(dense rule, conv rule, first rule or None, overrides) built from the options.

    ``composite``: a name of :data:`COMPOSITES`, or a user composite — a dict mapping ``"linear"``, ``"conv"``,
    ``"first"`` (the first Linear/Conv call), any other site kind (``"gelu"``, ``"batch_norm"``, ``"mul"`` ...)
    or a site name (``"layer1.0.relu#2"``) to a Rule object or rule name, or a callable ``site -> Rule | None``
    (None: the default rule). ``rule``: one rule name or Rule object for every Linear/Conv call."""
    if rule is not None and composite is not None:
        raise ValueError("give either rule= (one rule for every layer) or composite= (a named mapping), not both")
    overrides = None
    if rule is not None:
        if isinstance(rule, str) and rule in INPUT_RULES:
            raise ValueError(f"rule {rule!r} is meant for the first layer only; pass first={rule!r} with another "
                             "rule (or a composite) for the other layers")
        dense = conv = _as_rule(rule, params, "rule")
        first_rule = None
    elif isinstance(composite, dict) or callable(composite):
        dn, cn = (composite.get("linear", "epsilon"), composite.get("conv", "zplus")) if isinstance(composite, dict) \
            else ("epsilon", "zplus")
        dense, conv = _as_rule(dn, params, "composite['linear']"), _as_rule(cn, params, "composite['conv']")
        fr = composite.get("first") if isinstance(composite, dict) else None
        first_rule = _as_rule(fr, params, "composite['first']") if fr is not None else None
        if isinstance(composite, dict):
            overrides = {k: _as_rule(v, params, f"composite[{k!r}]") for k, v in composite.items()
                         if k not in ("linear", "conv", "first")}
        else:
            overrides = composite
    else:
        name = composite or "epsilon_plus"
        if name not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {name!r}; choose from {', '.join(COMPOSITES)}, or give a dict "
                             "{kind or layer name: rule} (see docs/extending.md)")
        (dn, dp), (cn, cp), fr = COMPOSITES[name]
        dense = make_rule(dn, **{**params, **dp})
        conv = make_rule(cn, **{**params, **cp})
        first_rule = make_rule(fr[0], **{**params, **fr[1]}) if fr else None
    if first is not None:
        if isinstance(first, str) and first not in LRP_RULES:
            raise ValueError(f"unknown first-layer rule {first!r}; choose from {', '.join(LRP_RULES)}")
        first_rule = _as_rule(first, params, "first")
    return dense, conv, first_rule, overrides


_PASS_KINDS = (ACTIVATIONS - {"relu", "leaky_relu", "prelu"}) | SOFTMAX


def lrp_composite(problem: Problem, dense, conv, first_rule, canonize: bool, stabilizer: float, canonizers=None,
                  rules=None) -> Composite:
    """Rules per call site: ``first_rule`` on the first Linear/Conv call, ``dense`` / ``conv`` on the others,
    the pass rule on elementwise activations other than ReLU / LeakyReLU / PReLU (which need none in the signal
    form) and on softmax, the LN rule on LayerNorm, the gate rule on products of two input-dependent tensors, the
    dense rule on BatchNorms no canonizer folded. ``rules``: {kind or site name: Rule} overriding these."""
    canons = list(canonizers) if canonizers is not None else ([MergeBatchNorm()] if canonize else [])
    pass_rule, ln_rule, gate_rule = Pass(stabilizer), NormIdentity(), Gate()
    bn_rule = dense if isinstance(dense, Epsilon) else Epsilon(stabilizer)
    overrides = rules if callable(rules) else dict(rules or {})

    def assign(binding):
        first = binding.first(("linear", "conv")) if first_rule is not None else None
        folded = {bn for c in canons for _, bn in getattr(c, "pairs", ())}
        out = {}
        for s in binding.order:
            if s.skip or s.module in folded:
                continue
            mine = overrides(s) if callable(overrides) else overrides.get(s.name, overrides.get(s.kind))
            if mine is not None:
                out[s] = mine
            elif s is first:
                out[s] = first_rule
            elif s.kind == "linear":
                out[s] = dense
            elif s.kind == "conv":
                out[s] = conv
            elif s.kind in ("linear_fn", "conv_fn"):
                what = "F.linear" if s.kind == "linear_fn" else "F.conv*d"
                mod = "nn.Linear" if s.kind == "linear_fn" else "nn.Conv1d/2d/3d"
                raise ValueError(f"the model calls {what} as a function ({s.name!r}); LRP reads the weights of "
                                 f"its layer rules from modules — use an {mod} module there")
            elif s.kind in _PASS_KINDS:
                out[s] = pass_rule
            elif s.kind == "layer_norm":
                out[s] = ln_rule
            elif s.kind == "mul":
                out[s] = gate_rule
            elif s.kind == "batch_norm":        # not folded: an affine layer of its own (graph) / pass (hooks)
                out[s] = bn_rule if hasattr(binding, "graph") else pass_rule
        return out

    return Composite(problem.model, assign, example=problem.inputs[:1], canonizers=canons,
                     needs=_NEEDS, method="lrp", layer=problem.layer)


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
        low=None, high=None, stabilizer: float = 1e-6, canonize: bool = True, canonizers=None) -> Result:
    """Relevance at the input (or at ``layer``), summing to the target output for conservative rules.

    rule: one rule for every Linear/Conv layer ("epsilon", "zero", "zplus", "alpha_beta", "gamma").
    composite: "epsilon_plus" (default), "epsilon_plus_flat", "epsilon_plus_box", "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat", "epsilon_gamma_box", or a user composite (a dict {"linear" / "conv" / "first" /
    a site kind / a site name: rule} or a callable site -> rule; see docs/extending.md). first: rule for the first
    layer ("flat", "wsquare", "zbox" with ``low``/``high`` input bounds, default each sample's min/max; or any
    other rule). Rules may be names or Rule objects. canonizers: a list replacing the default
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
    dense, conv, first_rule, overrides = lrp_rules(composite, rule, first, params)
    problem, precision = float32_problem(problem, "lrp")
    comp = lrp_composite(problem, dense, conv, first_rule, canonize, stabilizer, canonizers, overrides)
    x = problem.inputs
    at_layer = problem.layer is not None
    with comp:
        grad, n = modified_gradient(problem, comp, desc="lrp")
        base = problem.activation(x) if at_layer else x
        input_rule = getattr(comp.rules.get(comp.trace.first(("linear", "conv"))), "returns_relevance", False)
        rules = comp.names()
        names = {m: k for k, m in problem.model.named_modules()}
        merged = [p for c in comp.canonizers if hasattr(c, "merged") for p in c.merged(names)]
        unmerged = [p for c in comp.canonizers for p in getattr(c, "unmerged", ())]
        binding = comp.binding
    if unmerged and binding != "graph":
        warnings.warn(f"lrp: {len(unmerged)} BatchNorm layer(s) ({', '.join(unmerged[:3])}"
                      f"{' ...' if len(unmerged) > 3 else ''}) were not folded into the layer before them and get "
                      f"the pass rule, because {binding[len('module hooks ('):-1]}; make the model traceable (or "
                      "put each layer and its BatchNorm in one nn.Sequential) to fold them", stacklevel=2)
    values = grad if (input_rule and not at_layer) else grad * base
    rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, rows).detach()
    total = values.reshape(problem.n, -1).sum(1)
    info = {"n_evals": n + 1 + (problem.n if at_layer else 0), "rules": rules, "canonized": merged,
            "batchnorm_layers": unmerged, "binding": binding,
            "composite": None if rule is not None else (composite if isinstance(composite, str) or composite is None
                                                        else "user")
            or "epsilon_plus",
            "relevance_sum": total, "f_x": f_x, "completeness_gap": (total - f_x).abs(),
            # the share of f(x) the input relevance does not carry: biases (and folded BatchNorm shifts) absorb it;
            # on a bias-free network only the stabilisers and z+ neurons without positive input do
            "bias_share": 1 - total / torch.where(f_x == 0, torch.ones_like(f_x), f_x)}
    return finish(Result(values, info), precision)
