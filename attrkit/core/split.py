"""The one "model after a layer" splitter: the activation up to the layer is computed once, changed activations
(masked coalitions of a layer game, Ablation-CAM's zeroed channels) then run only through the "head" after it
(the thesis' section 3.3 trick: 16 s instead of 19 minutes on VGG16).

The split uses ``torch.fx`` (the call's one trace, :mod:`attrkit.core.trace`, with the layer kept as one node):
the nodes after the layer form the head, whose inputs are the layer's output plus any earlier value the head
still reads (skip connections; computed once per sample). The head is checked against the model's own outputs;
when tracing fails, the layer is used twice, or the check fails, the split falls back to a forward hook that
replaces the layer's output during a full forward pass (``head_only = False``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import fx, nn

from .budget import HEAD_CAP, device_cap, fit_rows
from .problem import Problem
from .trace import traced

_GRAPHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # model -> {layer, row shape, structure: graphs}


@dataclass
class LayerSplit:
    """``activation`` ``[N, ...]`` at the layer; ``run(masked, rows)`` -> model outputs for masked activations of
    samples ``rows``; ``head_only`` says whether only the part after the layer runs; ``chunk`` rows per call."""
    activation: torch.Tensor
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    head_only: bool
    chunk: int
    reason: str = ""
    head: nn.Module | None = None
    extras: list = field(default_factory=list)


def split_at_layer(problem: Problem, head_only: bool | None = None,
                   activation: torch.Tensor | None = None) -> LayerSplit:
    """Split ``problem.model`` at ``problem.layer`` (fx), or fall back to the replacing hook.

    ``head_only=False`` forces the hook path (used by tests to compare both); ``True`` raises if no split.
    ``activation``: the layer's output on ``problem.inputs`` when the caller has it already (no pass to
    compute it again unless the head also reads earlier values).
    """
    reason = "head_only=False was asked for"
    if head_only is not False:
        try:
            split = _fx_split(problem, activation)
        except Exception as e:  # tracing is best effort: any failure means "use the hook"
            split, reason = None, f"{type(e).__name__}: {e}"
        if split is not None:
            return split
        if head_only:
            raise ValueError(f"cannot evaluate only the part of the model after layer {problem.layer_name!r} "
                             f"({reason}); use head_only=None to fall back to a full forward with a hook")
    return _hook_split(problem, reason, activation)


def _fx_split(problem: Problem, activation: torch.Tensor | None = None) -> LayerSplit:
    model, layer, x = problem.model, problem.layer, problem.inputs
    key = (id(layer), tuple(x.shape[1:]), x.dtype, tuple(map(id, model.modules())), tuple(map(id, model.parameters())))
    graphs = _GRAPHS.get(model) if isinstance(model, nn.Module) else None
    if graphs is not None and key in graphs:        # traced and rewritten before (the output check below still runs)
        prefix, head, n_extras = graphs[key]
        act, ext = _prefix_values(problem, prefix, n_extras, activation)
        return _checked(problem, head, act, ext)
    prefix, head, n_extras = _trace(model, layer)
    act, ext = _prefix_values(problem, prefix, n_extras, activation)
    head = _prune(head, act, ext)
    split = _checked(problem, head, act, ext)
    if isinstance(model, nn.Module):
        _GRAPHS.setdefault(model, {})[key] = (prefix, head, n_extras)
    return split


def _trace(model, layer):
    """``(prefix, head, number of earlier values the head reads)`` from one fx trace of ``model`` at ``layer``."""
    gm = traced(model, (layer,))
    nodes = list(gm.graph.nodes)
    pos = {n: k for k, n in enumerate(nodes)}
    hits = [n for n in nodes if n.op == "call_module" and gm.get_submodule(n.target) is layer]
    if len(hits) != 1:
        raise ValueError(f"the layer appears {len(hits)} times in the traced graph")
    hit = hits[0]
    li = pos[hit]
    after = nodes[li + 1:]
    needed = []
    for n in after:
        for a in n.all_input_nodes:
            if pos[a] <= li and a not in needed:
                needed.append(a)
    consts = [a for a in needed if a.op == "get_attr"]
    extras = [a for a in needed if a is not hit and a.op != "get_attr"]

    head = head_after(gm, hit, extras, consts)

    pre_g = fx.Graph()
    env2 = {}
    for n in nodes[:li + 1]:
        env2[n] = pre_g.node_copy(n, lambda a: env2[a])
    pre_g.output((env2[hit],) + tuple(env2[e] for e in extras))
    prefix = fx.GraphModule(gm, pre_g)
    prefix.graph.eliminate_dead_code()
    prefix.recompile()
    return prefix, head, len(extras)


def _prefix_values(problem: Problem, prefix, n_extras: int, activation: torch.Tensor | None = None):
    if activation is not None and not n_extras:        # the head reads the layer's output alone: known already
        return activation.detach(), []
    x = problem.inputs
    step = problem.chunk(grad=False)
    with torch.inference_mode():
        parts = [prefix(x[s:s + step]) for s in range(0, x.shape[0], step)]
        act = torch.cat([p[0] for p in parts])
        # earlier values the head reads: per-sample tensors, or constants (a forward argument left at its default,
        # e.g. timm's attn_mask=None) passed as they are
        ext = [torch.cat([p[k + 1] for p in parts]) if isinstance(parts[0][k + 1], torch.Tensor)
               else _Const(parts[0][k + 1]) for k in range(n_extras)]
    if not isinstance(act, torch.Tensor):
        raise TypeError("the layer's output is not a tensor")
    return act, ext


def _checked(problem: Problem, head, act, ext) -> LayerSplit:
    """The split, once the head reproduces the model's outputs on every sample."""
    x, step = problem.inputs, problem.chunk(grad=False)
    with torch.inference_mode():
        out = torch.cat([head(act[s:s + step].clone(), *[e[s:s + step].clone() for e in ext])   # (in-place heads)
                         for s in range(0, x.shape[0], step)])
    ref = problem.outputs
    if ref is not None:
        scale = float(ref.abs().max()) if ref.numel() else 1.0
        if out.shape != ref.shape or not torch.allclose(out.to(ref.dtype), ref, rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
            raise ValueError("the split model does not reproduce the model's outputs")

    def run(masked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return head(masked, *[e[rows].value if isinstance(e, _Const) else e[rows] for e in ext])

    return LayerSplit(act, run, True, _head_chunk(problem, head, act, ext), extras=ext, head=head)


def _prune(head, act, ext):
    """A transformer head reading one token row computes only that row where it can (transformers.readout)."""
    if act.dim() != 3:
        return head
    from ..transformers.readout import prune_rows
    return prune_rows(head, act[:2].clone(), *[e[:2].clone() if isinstance(e, torch.Tensor) else e.value
                                               for e in ext])


class _Const:
    """A non-tensor value the head reads (``None``, a flag): the same for every row."""

    def __init__(self, value):
        self.value = value

    def __getitem__(self, rows):
        return self

    def clone(self):
        return self.value


def head_after(gm: fx.GraphModule, hit: fx.Node, extras=(), consts=None) -> fx.GraphModule:
    """The nodes after ``hit`` as a module taking ``hit``'s output (and the earlier values ``extras`` it still
    reads, as further arguments); ``consts``: the ``get_attr`` nodes it needs (default: all of them)."""
    nodes = list(gm.graph.nodes)
    after = [n for n in nodes[nodes.index(hit) + 1:] if consts is not None or n.op != "get_attr"]
    if consts is None:
        consts = [n for n in nodes if n.op == "get_attr"]
    g = fx.Graph()
    env = {hit: g.placeholder("activation")}
    for k, e in enumerate(extras):
        env[e] = g.placeholder(f"extra_{k}")
    for c in consts:
        env[c] = g.node_copy(c, lambda a: env[a])
    for n in after:
        env[n] = g.node_copy(n, lambda a: env[a])
    return fx.GraphModule(gm, g)


def _head_chunk(problem: Problem, head, act, ext) -> int:
    if problem.batch_size is not None:
        return problem.chunk(grad=False)
    per_row = 4 * act[:1].numel() * act.element_size() + sum(e[:1].numel() * e.element_size() for e in ext
                                                              if isinstance(e, torch.Tensor))
    return fit_rows(per_row, problem.max_memory, HEAD_CAP * device_cap(act))


def _hook_split(problem: Problem, reason: str, activation: torch.Tensor | None = None) -> LayerSplit:
    layer, name = problem.layer, problem.layer_name or "layer"
    x = problem.inputs

    def run(masked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with problem.tap() as tap:
            tap.reset()
            tap.replace_with = masked
            return problem.forward(x[rows], rows)

    if activation is not None:
        return LayerSplit(activation.detach(), run, False, problem.chunk(grad=False), reason=reason)
    captured = []

    def grab(_m, _a, out):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {name!r} returns {type(out).__name__}, not a tensor")
        captured.append(out.detach().clone())     # clone: a later in-place op must not change it

    step = problem.chunk(grad=False)
    handle = layer.register_forward_hook(grab)
    try:
        with torch.inference_mode():
            for s in range(0, x.shape[0], step):
                n_before = len(captured)
                problem.forward(x[s:s + step], torch.arange(s, min(s + step, x.shape[0])))
                if len(captured) - n_before != 1:
                    raise ValueError(f"layer {name!r} is called {len(captured) - n_before} times in one forward "
                                     "pass; a layer game needs a layer used exactly once")
    finally:
        handle.remove()
    act = torch.cat(captured)
    return LayerSplit(act, run, False, step, reason=reason)
