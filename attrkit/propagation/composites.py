"""``Composite``: backward rules for the duration of one call, bound to call sites and always removed.

The shape follows Zennit (a composite maps what it finds to rules; everything is undone on exit, also when the
block raised), but rules are bound to *call sites* of the traced graph (:mod:`attrkit.propagation.graph`): each
call of a reused module and each functional activation (``F.relu``, ``x.relu()``, ``torch.sigmoid``, ``F.gelu``,
``F.silu``, ``F.hardswish`` ...) gets its own rule, and :func:`modified_gradient` runs the gradient engine on a
:class:`~attrkit.propagation.graph.GraphRunner` of the model (:func:`run_rules`: inside the block, with a summary of
what was bound). Where torch.fx cannot trace the model, rules fall
back to forward hooks on modules; then a functional call or a second call of a rule-carrying module is refused
with the untraceable operation named. ``nn.DataParallel`` / ``DistributedDataParallel`` are unwrapped (warning).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core.modules import require_hooks
from ..core.problem import Problem
from ..gradients.engine import gradient_sum
from .graph import GraphRunner, Site, Untraceable, bind, module_kind

__all__ = ["Composite", "Trace", "modified_gradient", "run_rules", "MODULE_KINDS"]

# module type -> the torch function its forward calls (what a TorchFunctionMode sees; hook fallback only)
MODULE_KINDS: dict[type, str] = {
    nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softplus: "softplus", nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid", nn.Mish: "mish",
    nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d",
    nn.MaxPool1d: "max_pool1d", nn.MaxPool2d: "max_pool2d", nn.MaxPool3d: "max_pool3d",
}
_FUNCTION_NAMES = {"relu": "torch.relu / F.relu / Tensor.relu", "sigmoid": "torch.sigmoid / Tensor.sigmoid",
                   "tanh": "torch.tanh / Tensor.tanh"}
_MODULE_NAMES = {"relu": "nn.ReLU()", "leaky_relu": "nn.LeakyReLU()", "elu": "nn.ELU()", "gelu": "nn.GELU()",
                 "silu": "nn.SiLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "softplus": "nn.Softplus()",
                 "hardswish": "nn.Hardswish()", "hardsigmoid": "nn.Hardsigmoid()", "mish": "nn.Mish()",
                 "linear": "nn.Linear", "conv1d": "nn.Conv1d", "conv2d": "nn.Conv2d", "conv3d": "nn.Conv3d",
                 "max_pool1d": "nn.MaxPool1d", "max_pool2d": "nn.MaxPool2d", "max_pool3d": "nn.MaxPool3d"}


def kind_of(module: nn.Module) -> str | None:
    for cls in type(module).__mro__:
        if cls in MODULE_KINDS:
            return MODULE_KINDS[cls]
    return None


def _function_kind(func) -> str | None:
    name = getattr(func, "__name__", "") or ""
    name = name.strip("_")
    if name.endswith("_with_indices"):
        name = name[: -len("_with_indices")]
    return name if name in _KINDS else None


_KINDS = set(MODULE_KINDS.values())


class _CountCalls(TorchFunctionMode):
    """Counts the torch functions of the kinds in ``MODULE_KINDS`` called during a forward pass."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kind = _function_kind(func)
        if kind is not None:
            self.counts[kind] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Trace:
    """One forward pass, observed: modules in call order, calls per module, functional calls per kind."""
    order: list = field(default_factory=list)          # [(name, module)] leaf modules, first call order
    calls: Counter = field(default_factory=Counter)    # module -> number of calls
    functional: Counter = field(default_factory=Counter)   # kind -> calls not made by a module of that kind

    def first(self, types: tuple) -> nn.Module | None:
        return next((m for _, m in self.order if isinstance(m, types)), None)


def trace_forward(model: nn.Module, example: torch.Tensor) -> Trace:
    """Run ``model(example)`` without gradients and record what it calls."""
    tr = Trace()
    names = {m: n for n, m in model.named_modules()}
    module_kinds: Counter = Counter()

    def pre(module, args):
        if tr.calls[module] == 0 and not any(True for _ in module.children()):
            tr.order.append((names.get(module, "?"), module))
        tr.calls[module] += 1
        k = kind_of(module)
        if k is not None:
            module_kinds[k] += 1

    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    try:
        with torch.no_grad(), _CountCalls() as mode:
            model(example)
    finally:
        for h in handles:
            h.remove()
    for k, c in mode.counts.items():
        extra = c - module_kinds[k]
        if extra > 0:
            tr.functional[k] = extra
    return tr


def unwrap_parallel(model):
    """``model.module`` for ``nn.DataParallel`` / ``DistributedDataParallel`` (with a warning), else ``model``."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        warnings.warn(f"attrkit: the model is wrapped in {type(model).__name__}; modified backward rules are bound "
                      "to its .module (the same function, run on one device)", stacklevel=3)
        return model.module
    return model


class _Hooked:
    """What an untraceable model offers rules: its leaf modules in call order, as sites."""

    def __init__(self, trace: Trace):
        self.trace, self.calls = trace, trace.calls
        self.order = [Site(n, module_kind(m) or "", module=m) for n, m in trace.order]

    def first(self, kinds):
        return next((s for s in self.order if s.kind in kinds), None)

    def kinds(self):
        return {s.kind for s in self.order}


class Composite:
    """Rules attached for one block: ``with Composite(model, assign, ...) as ctx: ...``.

    assign(binding) -> {site: Rule}: chooses a rule per call site (``binding.order``: sites in execution order,
    each with ``kind``, ``module``, ``name``; ``binding.first(kinds)``). canonizers: objects of the
    :class:`~attrkit.propagation.canonizers.Canonizer` protocol (``canonize(binding)`` on the graph,
    ``attach(model, binding)`` on the hook fallback, ``merged`` / ``unmerged`` names read by :meth:`canonized`).
    needs: kinds (e.g. "relu") the rules need to see; on the hook fallback their functional calls are refused.
    unique: module types that may be called only once per forward pass on the hook fallback. layer: a module to
    keep whole in the graph (the explained layer). ``ctx.rows`` / ``ctx.n`` tell rules which samples the current
    batch holds; ``ctx.binding`` is ``"graph"`` or ``"module hooks (...)"``.
    """

    def __init__(self, model: nn.Module, assign: Callable, *, example: torch.Tensor, canonizers: Iterable = (),
                 needs: Iterable[str] = (), unique: tuple = (), method: str = "this method", layer=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{method} attaches rules to the model's layers; the model must be a torch.nn.Module, "
                            f"got {type(model).__name__}")
        self.model, self.assign, self.example = model, assign, example
        self.canonizers, self.needs, self.unique, self.method = list(canonizers), set(needs), unique, method
        self.layer = layer
        self.rules: dict = {}
        self.trace = None            # the Binding (graph) or _Hooked (fallback) the rules were chosen from
        self.binding = None
        self.runner = None
        self._graph_runner = None
        self.rows: torch.Tensor | None = None
        self.n = int(example.shape[0])
        self.probe_rows = 0          # rows of the observed forward pass the hook fallback runs (graph: none)
        self._handles: list = []
        self._inplace: list = []
        self._model_input = None

    # ------------------------------------------------------------------ what rules ask
    def check_input_layer(self, site, x: torch.Tensor, rule: str) -> None:
        given = self._graph_runner.last_input if self._graph_runner is not None else self._model_input
        if x is not given:
            raise ValueError(f"the {rule!r} rule is an input-layer rule, but layer {getattr(site, 'name', '?')!r} "
                             "does not receive the model's input unchanged (something runs before it, or it is "
                             "called twice); apply it only to the first layer of a model that starts with that "
                             "layer, or choose another first-layer rule")

    def names(self) -> dict:
        """``{site name: repr(rule)}`` of the rules bound in this block (each rule object described once)."""
        shown: dict = {}
        for r in self.rules.values():
            if id(r) not in shown:
                shown[id(r)] = repr(r)
        return {s.name: shown[id(r)] for s, r in self.rules.items()}

    def canonized(self) -> tuple[list, list]:
        """``(merged, unmerged)``: what the canonizers folded ("batchnorm -> layer") and the BatchNorms they left."""
        return ([m for c in self.canonizers for m in getattr(c, "merged", ())],
                [u for c in self.canonizers for u in getattr(c, "unmerged", ())])

    @property
    def returns_relevance(self) -> bool:
        """True when a bound rule returns relevance itself as the gradient (input-layer rules: flat, w^2, z-box),
        so the attribution at the input is the gradient, not input x gradient."""
        return any(getattr(r, "returns_relevance", False) for r in self.rules.values())

    def view(self, problem: Problem) -> Problem:
        """``problem`` with the model replaced by the graph runner (unchanged on the hook fallback)."""
        if self.runner is None:
            return problem
        return replace(problem, model=self.runner)

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "Composite":
        require_hooks(self.model, "a modified backward rule (LRP, DeepLIFT, guided backprop, DeconvNet)")
        try:
            self._attach()
        except BaseException:
            self._detach()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._detach()

    def _inner(self):
        from ..core.adapter import ModelAdapter
        outer = self.model
        inner = outer.model if isinstance(outer, ModelAdapter) else outer
        return outer, inner

    def _attach(self) -> None:
        from ..core.adapter import ModelAdapter
        outer, inner = self._inner()
        inner = unwrap_parallel(inner)
        try:
            binding = bind(inner, leaves=[self.layer] if self.layer is not None else [])
        except Untraceable as exc:
            self.binding = f"module hooks (torch.fx cannot trace the model: {exc})"
            self._untraceable = str(exc)
            return self._attach_hooks(inner)
        self.binding = "graph"
        for can in self.canonizers:
            if not hasattr(can, "canonize"):
                raise TypeError(f"canonizer {type(can).__name__} has no canonize(binding) method; see "
                                "docs/extending.md for the canonizer protocol")
            can.canonize(binding)
        self.trace = binding
        self.rules = {s: r for s, r in dict(self.assign(binding)).items() if r is not None
                      and (self.layer is None or s.module is not self.layer)}   # the explained layer is tapped
        for site, rule in self.rules.items():
            site.rule = rule
            if getattr(site.module, "inplace", False):
                self._inplace.append(site.module)
                site.module.inplace = False
        runner = self._graph_runner = GraphRunner(binding, self)
        self.runner = runner if not isinstance(outer, ModelAdapter) else \
            ModelAdapter(runner, outer.layout, outer.n, outer.forward_args, outer.forward_kwargs, outer.select)
        self._sites = list(binding.order)

    def _attach_hooks(self, inner) -> None:
        from ..core.adapter import rows_of
        with rows_of(self.model, torch.arange(self.example.shape[0])):
            trace = trace_forward(self.model, self.example)
        self.probe_rows = int(self.example.shape[0])
        self._check(trace)
        hooked = _Hooked(trace)
        for can in self.canonizers:
            if not hasattr(can, "attach"):
                raise ValueError(f"canonizer {type(can).__name__} works on the traced graph, and torch.fx cannot "
                                 f"trace this model ({self._untraceable}); make the model traceable or leave the "
                                 "canonizer out")
            self._handles += can.attach(inner, hooked)
        self._handles.append(inner.register_forward_pre_hook(self._remember_input))
        self.trace = hooked
        self.rules = {s: r for s, r in dict(self.assign(hooked)).items() if r is not None}
        for site, rule in self.rules.items():
            module = site.module
            if getattr(module, "inplace", False):
                self._inplace.append(module)
                module.inplace = False
            self._handles.append(module.register_forward_hook(self._hook(site, rule)))
        self._sites = list(hooked.order)

    def _detach(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        while self._inplace:
            self._inplace.pop().inplace = True
        for s in getattr(self, "_sites", []):
            s.rule = None
        self._model_input, self.rows, self.runner, self._graph_runner = None, None, None, None

    def _remember_input(self, module, args):
        self._model_input = args[0] if args else None

    def _hook(self, site: Site, rule):
        def hook(module, args, output):
            if rule.needs_grad and not (torch.is_grad_enabled() and isinstance(output, torch.Tensor)
                                        and output.requires_grad):
                return None
            return rule.forward(site, args, output, self)
        return hook

    def _check(self, tr: Trace) -> None:
        why = f"torch.fx cannot trace the model ({self._untraceable}), so {self.method} binds its rules with " \
              "module hooks"
        for kind in sorted(self.needs):
            if tr.functional.get(kind):
                fn = _FUNCTION_NAMES.get(kind, f"F.{kind}")
                mod = _MODULE_NAMES[kind]
                raise ValueError(
                    f"the model calls {kind} {tr.functional[kind]} time(s) as a function ({fn}); {why}, which "
                    f"cannot see those calls — make the model traceable by torch.fx, or call a {mod} module "
                    "(one per use) instead")
        names = {m: n for n, m in self.model.named_modules()}
        for module, count in tr.calls.items():
            if count > 1 and self.unique and isinstance(module, self.unique):
                raise ValueError(
                    f"module {names.get(module, '?')!r} ({type(module).__name__}) is called {count} times in one "
                    f"forward pass; {why}, one rule per module — make the model traceable by torch.fx, or give "
                    f"each use its own {type(module).__name__} module")


def modified_gradient(problem: Problem, composite: Composite, before: Callable | None = None,
                      desc: str = "modified gradient", activations: list | None = None) -> tuple[torch.Tensor, int]:
    """The gradient of the target at the input (or at ``problem.layer``) with the composite's rules active, from
    one forward and one backward pass per chunk.

    ``before(rows, problem)`` runs before each chunk's forward pass, with the problem whose model carries the rules
    (e.g. DeepLIFT's reference pass). ``activations``: a
    list that receives the layer's activation of each chunk, taken from the same pass (``problem.layer`` only).
    Must be called inside ``with composite``. Returns ``(gradient, n_evals)``.
    """
    problem = composite.view(problem)
    x = problem.inputs
    ones = torch.ones(1, dtype=torch.float64)

    def plan(rows, ks):
        composite.rows = rows
        if before is not None:
            before(rows, problem)
        return x[rows], ones.expand(len(rows)), None

    return gradient_sum(problem, torch.arange(problem.n), 1, plan, None,
                        grad_at="layer" if problem.layer is not None else "input", desc=desc, activations=activations)


def run_rules(problem: Problem, composite: Composite, before: Callable | None = None, desc: str = "modified gradient",
              activations: list | None = None) -> tuple[torch.Tensor, int, dict]:
    """:func:`modified_gradient` inside ``with composite``, and what was bound: ``(gradient, n_evals, bound)`` with
    ``bound = {"rules": {site: rule}, "binding": "graph" | "module hooks (...)", "canonized": [...],
    "batchnorm_layers": [...], "returns_relevance": bool}``; ``n_evals`` counts the hook fallback's observed row."""
    problem.chunk(grad=True)     # the memory probe (one row) on the plain model, before the rules are bound
    with composite:
        grad, n = modified_gradient(problem, composite, before, desc, activations)
        merged, unmerged = composite.canonized()
        bound = {"rules": composite.names(), "binding": composite.binding, "canonized": merged,
                 "batchnorm_layers": unmerged, "returns_relevance": composite.returns_relevance}
    return grad, n + composite.probe_rows, bound
