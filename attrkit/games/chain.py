"""The local prefix of a traced image model, for the receptive-field plans of :mod:`attrkit.games.local`.

Starting at the model's single input, the prefix takes the graph's nodes in order while each one is *local*:
a ``Conv2d``, a pooling module, a pointwise function or module (activations, eval-mode BatchNorm, arithmetic
with model constants), or a merge of local values of one spatial size: an addition, subtraction or product of
two of them (residual connections, gates) or a concatenation along channels (dense blocks, inception). The
output at a position of a merge depends on the players its inputs see there, so player sets propagate through
residual blocks and the downsampling shortcut. A plan may cut after a node only where the rest of the graph
reads nothing computed before it (``Step.cut``: after a whole residual block, not inside one).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..core.trace import traced

_POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                      nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
                      nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)
_POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, torch.sigmoid,
                        F.sigmoid, torch.tanh, F.tanh, F.hardtanh, F.hardswish, F.softplus}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh"}
_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
               torch.div}
_MERGES = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}


@dataclass
class _Step:
    node: fx.Node
    module: nn.Module | None      # Conv2d / pooling module, or None for a pointwise op or a merge
    sources: tuple = ()           # the prefix nodes it reads (two or more for a merge)
    cut: bool = True              # nothing after this node reads a value computed before it


@dataclass
class Chain:
    """The local prefix of a traced model: its steps in graph order, its input node, the traced module."""
    gm: fx.GraphModule
    steps: list
    input: fx.Node | None = None


def local_chain(model) -> Chain | None:
    """The longest local prefix (in graph order) from the model's single input, or None (no convolution in it,
    not traceable, several inputs)."""
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        gm = traced(model)                       # the call's one trace (core.trace)
    except Exception:    # not traceable: the game runs the whole network
        return None
    nodes = list(gm.graph.nodes)
    places = [n for n in nodes if n.op == "placeholder"]
    if len(places) != 1:
        return None
    local, steps = {places[0]}, []
    for n in nodes[nodes.index(places[0]) + 1:]:
        if n.op == "get_attr":
            continue
        srcs = tuple(a for a in n.all_input_nodes if a.op != "get_attr")
        if not srcs or any(a not in local for a in srcs):
            break                                   # a value from outside the prefix: the prefix ends
        if len(srcs) == 1:
            mod = _local_module(gm, n, srcs[0])
            if mod is None and not _pointwise(gm, n, srcs[0]):
                break
            steps.append(_Step(n, mod if not isinstance(mod, bool) else None, srcs))
        elif _merge(n, srcs):
            steps.append(_Step(n, None, srcs))
        else:
            break
        local.add(n)
    if not any(isinstance(s.module, nn.Conv2d) for s in steps):
        return None
    pos = {n: i for i, n in enumerate(nodes)}
    reach = max((pos[u] for u in places[0].users), default=-1)   # the furthest use of any value before a step
    for st in steps:
        st.cut = reach <= pos[st.node]
        reach = max([reach] + [pos[u] for u in st.node.users])
    return Chain(gm, steps, places[0])


def _merge(node, srcs) -> bool:
    """An elementwise sum / difference / product of two prefix values, or their concatenation on channels."""
    if node.op == "call_function" and node.target in _MERGES:
        return len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args)
    if node.op == "call_function" and node.target is torch.cat:
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        return isinstance(parts, (list, tuple)) and all(isinstance(p, fx.Node) for p in parts) and dim in (1, -3)
    return False


def _local_module(gm, node, cur):
    """The node's Conv2d / pooling module; True for a pointwise module; None otherwise."""
    if node.op != "call_module" or tuple(node.args) != (cur,) or node.kwargs:
        return None
    m = gm.get_submodule(node.target)
    if isinstance(m, nn.Conv2d):
        return m
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return None if isinstance(m, nn.MaxPool2d) and m.return_indices else m
    if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)) and m.training:
        return None            # random masks and batch statistics are not local
    return True if isinstance(m, _POINTWISE_MODULES) else None


def _pointwise(gm, node, cur) -> bool:
    """A pointwise function of ``cur`` (activation functions; arithmetic with numbers or model constants,
    e.g. a normalisation ``(x - mean) / std`` inside the model)."""
    args = list(node.args) + list(node.kwargs.values())
    if node.op == "call_function" and node.target in _ARITHMETIC:
        consts = [a for a in args if a is not cur]
        return len(args) == 2 and len(consts) == 1 and _constant(gm, consts[0])
    if not node.args or node.args[0] is not cur or any(isinstance(a, fx.Node) for a in args[1:]):
        return False
    if node.op == "call_function":
        return node.target in _POINTWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in _POINTWISE_METHODS
    return False


def _constant(gm, v) -> bool:
    """A number, or a model tensor that broadcasts over one sample (no batch dimension of its own)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return True
    if isinstance(v, fx.Node) and v.op == "get_attr":
        t = _attr(gm, v.target)
        return isinstance(t, torch.Tensor) and (t.dim() < 4 or (t.dim() == 4 and t.shape[0] == 1))
    return False


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def run_prefix(chain: Chain, x: torch.Tensor, upto: int, each=None) -> torch.Tensor:
    """The value of ``chain.steps[upto]`` for input ``x`` (``each(k, value)`` sees every step's value; values
    no later step reads are dropped on the way)."""
    gm, steps = chain.gm, chain.steps[:upto + 1]
    last = {}
    for k, st in enumerate(steps):
        for s in st.sources:
            last[s] = k
    env = {chain.input: x}
    for k, st in enumerate(steps):
        n = st.node
        out = run_node(gm, n, env)
        env[n] = out
        if each is not None:
            each(k, out)
        for s in st.sources:
            if last.get(s) == k and s is not n:
                env.pop(s, None)
    return env[steps[-1].node]


def run_node(gm: fx.GraphModule, n: fx.Node, values) -> object:
    """The value of node ``n`` (a module, function or method call of ``gm``) from its inputs' ``values`` (a
    mapping node -> value; ``get_attr`` inputs are read from ``gm``)."""
    args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda v: _attr(gm, v.target) if v.op == "get_attr" else values[v])
    if n.op == "call_module":
        return gm.get_submodule(n.target)(*args, **kwargs)
    if n.op == "call_function":
        return n.target(*args, **kwargs)
    return getattr(args[0], n.target)(*args[1:], **kwargs)
