"""Call sites of the traced graph (torch.fx): where backward rules are bound.

A rule belongs to one *call* of an operation, not to a module: torchvision's ResNet calls one ``self.relu`` three
times per block, MobileNet and EfficientNet call ``F.hardswish`` / ``torch.sigmoid`` / ``x.relu()`` as functions,
ConvNeXt calls ``F.layer_norm``. The model is traced once with ``torch.fx`` (the graph is cached per model and
module structure); every node that calls an activation (module, reused module, function or tensor method), a
softmax, a max pool, a Linear/Conv layer, a normalisation or a product of two input-dependent tensors becomes a
:class:`Site`. :class:`GraphRunner` runs the graph with a ``torch.fx.Interpreter`` on the model's own modules (so
hooks and layer taps still fire) and applies each site's rule to that call only. No code is generated per call.

Models torch.fx cannot trace raise :class:`Untraceable`, naming the operation and the line; the composites then
fall back to module hooks (which see modules called once each).
"""
from __future__ import annotations

import operator
import os
import traceback
import weakref

import torch
import torch.fx
from torch import nn

from ..core.trace import traced

__all__ = ["Site", "Binding", "GraphRunner", "Untraceable", "bind", "module_kind", "ACTIVATIONS", "RECTIFIERS",
           "GATES", "SOFTMAX"]

ACTIVATIONS = frozenset({"relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish",
                         "sigmoid", "tanh", "softplus", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid"})
# rectifying activations (a ReLU-like shape): Guided Backprop and DeconvNet rectify the gradient there
RECTIFIERS = frozenset({"relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish",
                        "softplus", "hardswish"})
GATES = frozenset({"sigmoid", "hardsigmoid", "softmax"})     # what a multiplicative gate is made of
SOFTMAX = frozenset({"softmax", "log_softmax"})

_MODULE_KINDS = [
    (nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.PReLU, "prelu"), (nn.ELU, "elu"),
    (nn.SELU, "selu"), (nn.CELU, "celu"), (nn.GELU, "gelu"), (nn.SiLU, "silu"), (nn.Mish, "mish"),
    (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.Softplus, "softplus"), (nn.Hardtanh, "hardtanh"),
    (nn.Hardsigmoid, "hardsigmoid"), (nn.Hardswish, "hardswish"), (nn.LogSigmoid, "logsigmoid"),
    (nn.Softmax, "softmax"), (nn.LogSoftmax, "log_softmax"),
    (nn.MaxPool1d, "max_pool"), (nn.MaxPool2d, "max_pool"), (nn.MaxPool3d, "max_pool"),
    (nn.Linear, "linear"), (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Conv3d, "conv"),
    (nn.modules.batchnorm._BatchNorm, "batch_norm"), (nn.LayerNorm, "layer_norm")]
# function / tensor-method name -> kind (functional Linear/Conv get their own kinds: LRP refuses them)
_FUNCTION_KINDS = {**{k: k for k in ACTIVATIONS | SOFTMAX}, "max_pool1d": "max_pool", "max_pool2d": "max_pool",
                   "max_pool3d": "max_pool", "linear": "linear_fn", "conv1d": "conv_fn", "conv2d": "conv_fn",
                   "conv3d": "conv_fn", "batch_norm": "batch_norm", "layer_norm": "layer_norm", "mul": "mul",
                   "imul": "mul"}
_SHAPE_OPS = {"view", "reshape", "flatten", "unsqueeze", "squeeze", "expand", "expand_as", "permute", "contiguous"}


def module_kind(module: nn.Module) -> str | None:
    for cls, kind in _MODULE_KINDS:
        if isinstance(module, cls):
            return kind
    return None


def _function_name(node) -> str:
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return (name or "").strip("_")


class Untraceable(Exception):
    """torch.fx could not trace the model; ``str()`` names the operation and where it is."""


class Site:
    """One call of an operation: ``name`` (module path, ``#k`` for the k-th call of a reused module, or
    ``path:function``), ``kind``, the ``module`` (None for functions), the fx ``node``, the ``rule`` bound to it,
    ``post`` (scale, shift) of a BatchNorm folded into this layer, ``skip`` for a BatchNorm folded into the layer
    before it, ``gate`` (which operand of a product is the gate: 0, 1 or None)."""

    def __init__(self, name: str, kind: str, module: nn.Module | None = None, node=None, op=None):
        self.name, self.kind, self.module, self.node, self.op = name, kind, module, node, op
        self.rule = None
        self.post = None
        self.skip = False
        self.gate = None
        self.tapped = False          # the explained layer: canonizers leave it in place
        self.kwargs: dict = {}

    def __repr__(self) -> str:
        return f"Site({self.name!r}, {self.kind})"

    def arg(self, args: tuple, index: int, name: str, default=None):
        """Argument ``index`` / keyword ``name`` of the current call (module sites: the module's attribute)."""
        if len(args) > index:
            return args[index]
        if name in self.kwargs:
            return self.kwargs[name]
        if self.module is not None and hasattr(self.module, name):
            return getattr(self.module, name)
        return default

    def __call__(self, args: tuple, kwargs: dict, ctx):
        if self.skip:
            return args[0]
        out = self.op(*args, **kwargs)
        if self.post is not None:
            scale, shift = self.post
            view = (1, -1) + (1,) * (out.dim() - 2)
            out = out * scale.view(view) + shift.view(view)
        rule = self.rule
        if rule is None or not isinstance(out, torch.Tensor):
            return out
        if rule.needs_grad and not (torch.is_grad_enabled() and out.requires_grad):
            return out
        self.kwargs = kwargs
        try:
            new = rule.forward(self, args, out, ctx)
        finally:
            self.kwargs = {}
        return out if new is None else new


class Binding:
    """The sites of one model, in graph (execution) order."""

    def __init__(self, model: nn.Module, graph, sites: list[Site]):
        self.model, self.graph, self.order = model, graph, sites
        self.by_node = {s.node: s for s in sites if s.node is not None}

    def first(self, kinds) -> Site | None:
        return next((s for s in self.order if s.kind in kinds), None)

    def kinds(self) -> set:
        return {s.kind for s in self.order}

    def producer(self, site: Site, arg: int = 0) -> Site | None:
        """The site that computed argument ``arg`` of ``site`` directly (None for a non-site node)."""
        a = site.node.args[arg] if site.node is not None and len(site.node.args) > arg else None
        return self.by_node.get(a) if isinstance(a, torch.fx.Node) else None


# ----------------------------------------------------------------------------------- tracing
class _Tracer(torch.fx.Tracer):
    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m, qualname):
        return any(m is leaf for leaf in self.leaves) or super().is_leaf_module(m, qualname)


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _structure(model: nn.Module) -> tuple:
    return tuple((n, id(m), type(m), m.training) for n, m in model.named_modules())


def _describe(exc: BaseException) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    tracing = os.path.join(os.path.dirname(here), "core", "trace.py")
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith((torch_dir, here, tracing))]
    msg = (str(exc).strip().splitlines() or [""])[0][:200]
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} `{frames[-1].line}`" if frames else ""
    return f"{type(exc).__name__}: {msg}{where}"


def trace_graph(model: nn.Module, leaves=()) -> torch.fx.Graph:
    """The model's fx graph (cached while its module structure is unchanged); raises :class:`Untraceable`."""
    key = tuple(id(m) for m in leaves)
    structure = _structure(model)
    try:
        hit = _CACHE.get(model, {}).get(key)
    except TypeError:
        hit = None
    if hit is not None and hit[0] == structure:
        return hit[1]
    try:
        graph = traced(model, tuple(leaves)).graph      # the call's one trace (core.trace), shared with the splitter
    except Exception as exc:          # noqa: BLE001 - any tracing failure is reported the same way
        raise Untraceable(_describe(exc)) from None
    try:
        _CACHE.setdefault(model, {})[key] = (structure, graph)
    except TypeError:
        pass
    return graph


def _holder_graph(user, holder, leaves):
    try:
        hit = _CACHE.get(user, {}).get("holder")
    except TypeError:
        hit = None
    if hit is not None:
        return hit
    graph = _Tracer(tuple(leaves) + (user,)).trace(holder)
    try:
        _CACHE.setdefault(user, {})["holder"] = graph
    except TypeError:
        pass
    return graph


def _depends_on_input(graph) -> set:
    dep = set()
    for n in graph.nodes:
        if n.op == "placeholder" or any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    return dep


def _caller(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    v = list(stack.values())[-1]
    return str(v[0] if isinstance(v, tuple) else v)


def _method_op(name: str):
    return lambda self_, *a, **k: getattr(self_, name)(*a, **k)


def _no_inplace(fn):
    def call(*a, **k):
        if k.get("inplace"):
            k = {**k, "inplace": False}
        return fn(*a, **k)
    return call


def _gate_of(node, dep: set, by_node: dict) -> int | None:
    """Which operand of a product comes (through shape-only ops) from a sigmoid-like gate."""
    hits = []
    for i, a in enumerate(node.args[:2]):
        for _ in range(4):
            if not isinstance(a, torch.fx.Node):
                break
            s = by_node.get(a)
            if s is not None and s.kind in GATES:
                hits.append(i)
                break
            if _function_name(a) in _SHAPE_OPS and a.args:
                a = a.args[0]
                continue
            break
    return hits[0] if len(hits) == 1 else None


class _Holder(nn.Module):
    """Holds a model that is itself one operation (``nn.Linear`` as the whole model), so it is traced as a call."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def bind(model: nn.Module, leaves=()) -> Binding:
    """Trace ``model`` and return its call sites (``leaves``: modules kept whole, e.g. an explained layer)."""
    user = model
    if module_kind(model) is not None or any(model is leaf for leaf in leaves):
        model = _Holder(model)
    graph = trace_graph(user, leaves) if model is user else _holder_graph(user, model, leaves)
    mods = dict(model.named_modules())
    dep = _depends_on_input(graph)
    uses: dict = {}
    sites, by_node = [], {}
    for node in graph.nodes:
        if node not in dep or node.op not in ("call_module", "call_function", "call_method"):
            continue
        if node.op == "call_module":
            module = mods.get(node.target)
            kind = module_kind(module) if module is not None else None
            if kind is None:
                continue
            uses[node.target] = uses.get(node.target, 0) + 1
            site = Site(node.target if model is user else "(model)", kind, module=module, node=node, op=module)
        else:
            fname = _function_name(node)
            kind = _FUNCTION_KINDS.get(fname)
            if kind is None:
                continue
            if kind == "mul" and not (len(node.args) >= 2 and all(isinstance(a, torch.fx.Node) and a in dep
                                                                  for a in node.args[:2])):
                continue                     # a product with a constant or parameter is linear
            if node.kwargs.get("return_indices"):
                continue
            if node.op == "call_method":
                t = node.target
                op = _method_op(t[:-1] if t.endswith("_") and not t.startswith("__") else t)   # x.relu_() -> relu
            else:
                op = operator.mul if fname == "imul" else node.target
            where = _caller(node)
            site = Site(f"{where + ':' if where else ''}{fname}", kind, node=node, op=_no_inplace(op))
        site.tapped = site.module is not None and any(site.module is leaf for leaf in leaves)
        sites.append(site)
        by_node[node] = site
    # reused modules: name each call
    count: dict = {}
    for s in sites:
        if s.module is not None and uses.get(s.node.target, 0) > 1:
            count[s.node.target] = count.get(s.node.target, 0) + 1
            s.name = f"{s.node.target}#{count[s.node.target]}"
    # repeated function names in one module: number them
    seen: dict = {}
    for s in sites:
        if s.module is None:
            seen[s.name] = seen.get(s.name, 0) + 1
    numbered: dict = {}
    for s in sites:
        if s.module is None and seen[s.name] > 1:
            numbered[s.name] = numbered.get(s.name, 0) + 1
            s.name = f"{s.name}#{numbered[s.name]}"
    for s in sites:
        if s.kind == "mul":
            s.gate = _gate_of(s.node, dep, by_node)
    return Binding(model, graph, sites)


# ----------------------------------------------------------------------------------- running
class _Interpreter(torch.fx.Interpreter):
    def __init__(self, root, graph, sites: dict, ctx):
        super().__init__(root, garbage_collect_values=True, graph=graph)
        self.sites, self.ctx = sites, ctx

    def run_node(self, n):
        site = self.sites.get(n)
        if site is None:
            return super().run_node(n)
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            return site(args, kwargs, self.ctx)


class GraphRunner(nn.Module):
    """``model``'s forward pass, executed from its graph with the binding's rules at their call sites."""

    def __init__(self, binding: Binding, ctx):
        super().__init__()
        self.root = binding.model
        sites = {s.node: s for s in binding.order if s.rule is not None or s.post is not None or s.skip}
        object.__setattr__(self, "_interp", _Interpreter(binding.model, binding.graph, sites, ctx))
        self._names = [n.target for n in binding.graph.nodes if n.op == "placeholder"]
        self._defaults = {n.target: n.args[0] for n in binding.graph.nodes if n.op == "placeholder" and n.args}
        self.last_input = None       # the positional input of the current call (input-layer rules check it)

    def forward(self, *args, **kwargs):
        self.last_input = args[0] if args else None
        args = list(args)
        for name in self._names[len(args):]:
            if name in kwargs:
                args.append(kwargs[name])
            elif name in self._defaults:
                args.append(self._defaults[name])
            elif name.startswith("*"):
                break
            else:
                raise TypeError(f"missing model input {name!r}")
        return self._interp.run(*args)
