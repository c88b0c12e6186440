"""The part of a model after one layer, as a module of its own (torch.fx), to evaluate only what changes.

``tail_after(model, layer_name, act, out)`` returns a ``GraphModule`` ``h -> model output`` when the model
traces with torch.fx and everything after the layer depends on the layer's output alone (plus parameters);
otherwise ``None`` and callers fall back to full forward passes with the layer's output replaced. The tail is
checked once against the real model (``act`` -> ``out``) before it is trusted.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["tail_after"]


def tail_after(model: nn.Module, layer_name: str, act: torch.Tensor, out: torch.Tensor):
    try:
        import torch.fx
        gm = torch.fx.symbolic_trace(model)
    except Exception:
        return None
    nodes = list(gm.graph.nodes)
    hits = [n for n in nodes if n.op == "call_module" and n.target == layer_name]
    if len(hits) != 1:
        return None
    start = hits[0]
    dep = {start}
    for n in nodes[nodes.index(start) + 1:]:
        if any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    if not any(n.op == "output" for n in dep):
        return None
    for n in dep - {start}:
        if any(a not in dep and a.op != "get_attr" for a in n.all_input_nodes):
            return None      # needs values from before the layer (skip connections, input sizes)
    graph = torch.fx.Graph()
    env = {start: graph.placeholder("h")}
    for n in nodes:
        if n is start:
            continue
        if n in dep or (n.op == "get_attr" and any(u in dep for u in n.users)):
            env[n] = graph.node_copy(n, lambda a: env[a])
    try:
        tail = torch.fx.GraphModule(gm, graph)
        with torch.no_grad():
            got = tail(act)
    except Exception:
        return None
    if not isinstance(got, torch.Tensor) or got.shape != out.shape or \
            not torch.allclose(got, out, rtol=1e-4, atol=1e-5 * float(out.abs().max().clamp_min(1))):
        return None
    return tail
