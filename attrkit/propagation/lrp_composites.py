"""LRP composites as configuration: which rule each call site gets.

:class:`LRPComposite` is Zennit's composite bound to call sites (see :mod:`attrkit.propagation.graph`): a rule for
``nn.Linear`` calls, one for ``nn.Conv*d`` calls, optionally one for the first Linear/Conv call, and overrides by
site kind, site name or module class. The named composites of :data:`COMPOSITES` are built from the ``lrp`` options
(``epsilon``, ``gamma``, ``low`` ...): each rule takes the parameters its constructor has
(:func:`~attrkit.propagation.rules.make_rule`). :func:`lrp_composite` turns ``ak.explain``'s ``composite=`` /
``rule=`` / ``first=`` into one ``LRPComposite``.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

from .graph import ACTIVATIONS, SOFTMAX
from .rules import INPUT_RULES, LRP_RULES, Epsilon, Gate, NormIdentity, Pass, Rule, ZPlus, make_rule

__all__ = ["LRPComposite", "COMPOSITES", "lrp_composite"]

# name -> (dense rule, conv rule, first-layer rule): (rule name, parameters fixed by the composite)
COMPOSITES = {
    "epsilon_plus": (("epsilon", {}), ("zplus", {}), None),
    "epsilon_plus_flat": (("epsilon", {}), ("zplus", {}), ("flat", {})),
    "epsilon_plus_box": (("epsilon", {}), ("zplus", {}), ("zbox", {})),
    "epsilon_alpha2_beta1": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), None),
    "epsilon_alpha2_beta1_flat": (("epsilon", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), ("flat", {})),
    "epsilon_gamma_box": (("epsilon", {}), ("gamma", {}), ("zbox", {})),
}
# elementwise activations other than the rectifiers (which need no rule in the signal form), and softmax
_PASS_KINDS = (ACTIVATIONS - {"relu", "leaky_relu", "prelu"}) | SOFTMAX


def _as_rule(spec, what: str, params: dict | None = None) -> Rule:
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        return make_rule(spec, **(params or {}))
    raise TypeError(f"{what} must be a rule name ({', '.join(LRP_RULES)}) or an attrkit.propagation.Rule object, "
                    f"got {type(spec).__name__}")


class LRPComposite:
    """Rules per call site. ``linear`` / ``conv``: the rule of Linear / Conv calls (rule objects or names; default
    epsilon / z+); ``first``: the rule of the first Linear/Conv call (None: its kind's rule); ``rules``: overrides,
    a mapping ``{site name | site kind | module class: rule}`` (looked up in that order) or a callable
    ``site -> rule | None``. Other sites get the defaults: the pass rule on elementwise activations other than
    ReLU / LeakyReLU / PReLU and on softmax, the LN rule on LayerNorm, the gate rule on products of two
    input-dependent tensors, the dense rule (if epsilon, else epsilon(``stabilizer``)) on BatchNorms no canonizer
    folded. ``name`` is reported as ``info["composite"]``.
    """

    def __init__(self, linear=None, conv=None, first=None, rules: Mapping | Callable | None = None, *,
                 stabilizer: float = 1e-6, name: str | None = "user"):
        self.linear = _as_rule(linear, "linear") if linear is not None else Epsilon()
        self.conv = _as_rule(conv, "conv") if conv is not None else ZPlus()
        self.first = _as_rule(first, "first") if first is not None else None
        if rules is not None and not callable(rules) and not isinstance(rules, Mapping):
            raise TypeError(f"rules must be a mapping {{site kind or name: rule}} or a callable site -> rule, got "
                            f"{type(rules).__name__}")
        self.rules = rules if callable(rules) else {k: _as_rule(v, f"rules[{k!r}]") for k, v in (rules or {}).items()}
        self.name = name
        self._pass, self._ln, self._gate = Pass(stabilizer), NormIdentity(), Gate()
        self._bn = self.linear if isinstance(self.linear, Epsilon) else Epsilon(stabilizer)

    def override(self, site) -> Rule | None:
        """The rule ``rules`` gives ``site`` (None: none)."""
        if callable(self.rules):
            return self.rules(site)
        if site.name in self.rules:
            return self.rules[site.name]
        if site.kind in self.rules:
            return self.rules[site.kind]
        return next((r for k, r in self.rules.items() if isinstance(k, type) and isinstance(site.module, k)), None)

    def assign(self, binding) -> dict:
        """``{site: rule}`` for a binding (what :class:`~attrkit.propagation.composites.Composite` calls)."""
        first = binding.first(("linear", "conv")) if self.first is not None else None
        graph = hasattr(binding, "graph")
        out = {}
        for site in binding.order:
            if site.skip:                           # folded into the layer before it by a canonizer
                continue
            rule = self.override(site)
            if rule is None:
                rule = self.first if site is first else self._default(site, graph)
            if rule is not None:
                out[site] = rule
        return out

    def _default(self, site, graph: bool) -> Rule | None:
        kind = site.kind
        if kind in ("linear", "conv"):
            return self.linear if kind == "linear" else self.conv
        if kind in ("linear_fn", "conv_fn"):
            what, mod = ("F.linear", "nn.Linear") if kind == "linear_fn" else ("F.conv*d", "nn.Conv1d/2d/3d")
            raise ValueError(f"the model calls {what} as a function ({site.name!r}); LRP reads the weights of its "
                             f"layer rules from modules — use an {mod} module there")
        if kind in _PASS_KINDS:
            return self._pass
        if kind == "batch_norm":         # not folded: an affine layer of its own (graph) / pass (hooks)
            return self._bn if graph else self._pass
        return {"layer_norm": self._ln, "mul": self._gate}.get(kind)

    def __repr__(self) -> str:
        return f"LRPComposite(name={self.name!r}, linear={self.linear!r}, conv={self.conv!r}, first={self.first!r})"


def lrp_composite(composite, rule, first, params: dict) -> LRPComposite:
    """The composite of ``lrp``'s options. ``composite``: a name of :data:`COMPOSITES` (default epsilon_plus), an
    :class:`LRPComposite`, a dict ``{"linear" / "conv" / "first" / site kind / site name / module class: rule}`` or a
    callable ``site -> rule | None``; ``rule``: one rule for every Linear/Conv call; ``first``: the first layer's
    rule. Rule names are built from ``params`` (:func:`~attrkit.propagation.rules.make_rule`)."""
    if rule is not None and composite is not None:
        raise ValueError("give either rule= (one rule for every layer) or composite= (a named mapping), not both")
    stab = params.get("stabilizer", 1e-6)
    if rule is not None:
        if isinstance(rule, str) and rule in INPUT_RULES:
            raise ValueError(f"rule {rule!r} is meant for the first layer only; pass first={rule!r} with another "
                             "rule (or a composite) for the other layers")
        one = _as_rule(rule, "rule", params)
        comp = LRPComposite(one, one, stabilizer=stab, name=None)
    elif isinstance(composite, LRPComposite):
        comp = composite
    elif isinstance(composite, Mapping):
        rest = {k: _as_rule(v, f"composite[{k!r}]", params) for k, v in composite.items()
                if k not in ("linear", "conv", "first")}
        comp = LRPComposite(*(_as_rule(composite.get(k, d), f"composite[{k!r}]", params)
                              for k, d in (("linear", "epsilon"), ("conv", "zplus"))),
                            _as_rule(composite["first"], "composite['first']", params)
                            if composite.get("first") is not None else None, rest, stabilizer=stab)
    elif callable(composite):
        comp = LRPComposite(make_rule("epsilon", **params), make_rule("zplus", **params), rules=composite,
                            stabilizer=stab)
    else:
        name = composite or "epsilon_plus"
        if name not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {name!r}; choose from {', '.join(COMPOSITES)}, or give an "
                             "LRPComposite or a dict {kind or layer name: rule} (see docs/extending.md)")
        (dn, dp), (cn, cp), fr = COMPOSITES[name]
        comp = LRPComposite(make_rule(dn, **{**params, **dp}), make_rule(cn, **{**params, **cp}),
                            make_rule(fr[0], **{**params, **fr[1]}) if fr else None, stabilizer=stab, name=name)
    if first is not None:
        if isinstance(first, str) and first not in LRP_RULES:
            raise ValueError(f"unknown first-layer rule {first!r}; choose from {', '.join(LRP_RULES)}")
        comp = copy.copy(comp)
        comp.first = _as_rule(first, "first", params)
    return comp
