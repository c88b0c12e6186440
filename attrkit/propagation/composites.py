"""``Composite``: backward rules for the duration of one call, registered as hooks and always removed.

The shape follows Zennit: a composite maps modules to rules, registers one forward hook per rule on enter and
removes every hook on exit (also when the block raised). Before the rules are attached, one forward pass on a
single example (no gradients) checks that the rules can see what they need: a rule on a module type is refused
when the model calls that operation as a function (``F.relu``, ``torch.relu``, ``x.relu()``), which no module
hook can see, or calls one rule-carrying module twice per forward pass. ``modified_gradient`` runs the gradient
engine (:func:`attrkit.gradients.engine.gradient_sum`) under a composite.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core.modules import require_hooks
from ..core.problem import Problem
from ..gradients.engine import gradient_sum
from .rules import Rule

__all__ = ["Composite", "Trace", "modified_gradient", "MODULE_KINDS"]

# module type -> the torch function its forward calls (what a TorchFunctionMode sees)
MODULE_KINDS: dict[type, str] = {
    nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softplus: "softplus",
    nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d",
    nn.MaxPool1d: "max_pool1d", nn.MaxPool2d: "max_pool2d", nn.MaxPool3d: "max_pool3d",
}
_FUNCTION_NAMES = {"relu": "torch.relu / F.relu / Tensor.relu", "linear": "F.linear", "conv1d": "F.conv1d",
                   "conv2d": "F.conv2d", "conv3d": "F.conv3d", "max_pool1d": "F.max_pool1d",
                   "max_pool2d": "F.max_pool2d", "max_pool3d": "F.max_pool3d"}
_MODULE_NAMES = {"relu": "nn.ReLU()", "linear": "nn.Linear", "conv1d": "nn.Conv1d", "conv2d": "nn.Conv2d",
                 "conv3d": "nn.Conv3d", "max_pool1d": "nn.MaxPool1d", "max_pool2d": "nn.MaxPool2d",
                 "max_pool3d": "nn.MaxPool3d", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()"}


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


class Composite:
    """Rules attached for one block: ``with Composite(model, assign, ...) as ctx: ...``.

    assign(trace) -> {module: Rule}: chooses the rules, given the observed forward pass (call order tells which
    layer is first). canonizers: objects with ``attach(model, ctx) -> handles`` and ``params``
    (module -> merged (weight, bias)). needs: kinds (e.g. "relu") the rules need as modules: functional calls of
    them are refused. unique: module types that may be called only once per forward pass.
    ``ctx.rows`` / ``ctx.n`` tell rules which samples the current batch holds.
    """

    def __init__(self, model: nn.Module, assign: Callable[[Trace], dict], *, example: torch.Tensor,
                 canonizers: Iterable = (), needs: Iterable[str] = (), unique: tuple = (), method: str = "this method"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{method} attaches rules to the model's layers; the model must be a torch.nn.Module, "
                            f"got {type(model).__name__}")
        self.model, self.assign, self.example = model, assign, example
        self.canonizers, self.needs, self.unique, self.method = list(canonizers), set(needs), unique, method
        self.rules: dict[nn.Module, Rule] = {}
        self.trace: Trace | None = None
        self.rows: torch.Tensor | None = None
        self.n = int(example.shape[0])
        self._handles: list = []
        self._inplace: list = []
        self._model_input = None
        self._merged: dict = {}

    # ------------------------------------------------------------------ what rules ask
    def params(self, module: nn.Module) -> tuple:
        """The layer's weight and bias, detached (BatchNorm folded in when a canonizer merged it)."""
        if module in self._merged:
            return self._merged[module]
        bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
        return module.weight.detach(), bias

    def check_input_layer(self, module: nn.Module, x: torch.Tensor, rule: str) -> None:
        if x is not self._model_input:
            name = dict((m, n) for n, m in self.model.named_modules()).get(module, type(module).__name__)
            raise ValueError(f"the {rule!r} rule is an input-layer rule, but layer {name!r} does not receive the "
                             "model's input unchanged (something runs before it, or it is called twice); apply "
                             "it only to the first layer of a model that starts with that layer, or choose "
                             "another first-layer rule")

    def names(self) -> dict:
        names = {m: n for n, m in self.model.named_modules()}
        return {names.get(m, "?"): repr(r) for m, r in self.rules.items()}

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

    def _attach(self) -> None:
        for can in self.canonizers:
            self._handles += can.attach(self.model)
            self._merged.update(can.params)
        self._handles.append(self.model.register_forward_pre_hook(self._remember_input))
        from ..core.adapter import rows_of
        with rows_of(self.model, torch.arange(self.example.shape[0])):
            self.trace = trace_forward(self.model, self.example)
        self._check(self.trace)
        for can in self.canonizers:
            can.verify(self.trace)
        self.rules = dict(self.assign(self.trace))
        for module, rule in self.rules.items():
            if getattr(module, "inplace", False):
                self._inplace.append(module)
                module.inplace = False
            self._handles.append(module.register_forward_hook(self._hook(rule)))

    def _detach(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        while self._inplace:
            self._inplace.pop().inplace = True
        for can in self.canonizers:
            can.params.clear()
        self._merged, self._model_input, self.rows = {}, None, None

    def _remember_input(self, module, args):
        self._model_input = args[0] if args else None

    def _hook(self, rule: Rule):
        def hook(module, args, output):
            if rule.needs_grad and not (torch.is_grad_enabled() and isinstance(output, torch.Tensor)
                                        and output.requires_grad):
                return None
            return rule.forward(module, args, output, self)
        return hook

    def _check(self, tr: Trace) -> None:
        for kind in sorted(self.needs):
            if tr.functional.get(kind):
                fn = _FUNCTION_NAMES.get(kind, f"torch.{kind}")
                mod = _MODULE_NAMES.get(kind, "a module")
                raise ValueError(
                    f"the model calls {kind} {tr.functional[kind]} time(s) as a function ({fn}) rather than "
                    f"through a module; {self.method} applies its rule with a hook on each {mod} module and would "
                    f"silently skip those calls — use a separate {mod} module for each call")
        names = {m: n for n, m in self.model.named_modules()}
        for module, count in tr.calls.items():
            if count > 1 and self.unique and isinstance(module, self.unique):
                raise ValueError(
                    f"module {names.get(module, '?')!r} ({type(module).__name__}) is called {count} times in one "
                    f"forward pass; {self.method} attaches one rule per module use — give each use its own "
                    f"{type(module).__name__} module")


def modified_gradient(problem: Problem, composite: Composite, before: Callable | None = None,
                      desc: str = "modified gradient") -> tuple[torch.Tensor, int]:
    """The gradient of the target at the input (or at ``problem.layer``) with the composite's rules active.

    ``before(rows)`` runs before each chunk's forward pass (e.g. DeepLIFT's reference pass). Must be called
    inside ``with composite``. Returns ``(gradient, n_evals)``.
    """
    x = problem.inputs
    at_layer = problem.layer is not None
    shape = tuple(problem.activation(x[:1]).shape[1:]) if at_layer else tuple(x.shape[1:])
    ones = torch.ones(1, dtype=torch.float64)

    def plan(rows, ks):
        composite.rows = rows
        if before is not None:
            before(rows)
        return x[rows], ones.expand(len(rows)), None

    grad, n = gradient_sum(problem, torch.arange(problem.n), 1, plan, shape,
                           grad_at="layer" if at_layer else "input", desc=desc)
    return grad, n + (1 if at_layer else 0)
