"""Compute only the token rows a head reads: a ``torch.fx`` rewrite of the part of a transformer after a layer.

A ViT classifies from the class token (``norm(x)[:, 0]``), so in the last block only that row of the attention
(one query against all keys and values), of the residual adds, of the MLP and of the norm matter. Starting at
the row selection, :func:`prune_rows` pushes it back through the graph: token-wise modules (Linear, LayerNorm,
activations, dropout), elementwise ``+ - *`` and activation functions run on the selected rows; an
``nn.MultiheadAttention`` (``batch_first``) gets the selected rows as its query and all rows as keys and values;
anything else takes the selection at its output (no saving, still right). The rewritten head is checked against
the original on example rows and used only when it agrees (float rounding aside); otherwise the original is kept.

On the zoo's ``shapes_vit`` after ``blocks.0`` the last block's attention runs 1 query instead of 65 and its
MLP 1 token instead of 65 (bench W14).
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

_TOKENWISE = (nn.Linear, nn.LayerNorm, nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity,
              nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Mish, nn.Hardswish) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm")
                                                                          else ())
_ELEMENTWISE = (operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, torch.relu, torch.tanh,
                torch.sigmoid, F.relu, F.gelu, F.silu)


def _row_index(node: fx.Node):
    """``k`` for ``t[:, k]`` on a rank-3 tensor ``t``, else None."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
        return None
    idx = node.args[1]
    if isinstance(idx, tuple) and len(idx) == 2 and idx[0] == slice(None) and isinstance(idx[1], int) \
            and _shape(node.args[0]) is not None and len(_shape(node.args[0])) == 3:
        return idx[1]
    return None


def _shape(a):
    meta = a.meta.get("tensor_meta") if isinstance(a, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class _Pusher:
    def __init__(self, gm: fx.GraphModule, tokens: int, sl: slice):
        self.gm, self.g, self.tokens, self.sl = gm, gm.graph, tokens, sl
        self.memo: dict = {}
        self.saved = 0                              # operations moved onto the selected rows

    def cut(self, node):
        return self.g.call_function(operator.getitem, (node, (slice(None), self.sl)))

    def push(self, node: fx.Node) -> fx.Node:
        """A node equal to ``node[:, sl]``."""
        if node not in self.memo:
            self.memo[node] = self._push(node)
        return self.memo[node]

    def _arg(self, a, rank):
        if not isinstance(a, fx.Node):
            return a                                # a number
        s = _shape(a)
        if s is None:
            raise ValueError("no shape")
        if len(s) == rank and s[1] == self.tokens:
            return self.push(a)
        if len(s) < rank - 1 or (len(s) == rank and s[1] == 1):
            return a                                # broadcasts over the token axis
        raise ValueError("operand not token-aligned")

    def _push(self, node: fx.Node) -> fx.Node:
        s = _shape(node)
        if s is None or len(s) != 3 or s[1] != self.tokens:
            return self.cut(node)
        try:
            if node.op == "call_module" and not node.kwargs and len(node.args) == 1 \
                    and isinstance(self.gm.get_submodule(node.target), _TOKENWISE):
                new = self.g.call_module(node.target, (self.push(node.args[0]),))
            elif node.op == "call_function" and node.target in _ELEMENTWISE \
                    and not any(isinstance(v, fx.Node) for v in node.kwargs.values()):
                new = self.g.call_function(node.target, tuple(self._arg(a, 3) for a in node.args), dict(node.kwargs))
            elif node.op == "call_function" and node.target is operator.getitem and node.args[1] == 0 \
                    and self._attention(node.args[0]):
                mha = node.args[0]
                q, k, v = mha.args[:3]
                call = self.g.call_module(mha.target, (self.push(q), k, v), dict(mha.kwargs))
                new = self.g.call_function(operator.getitem, (call, 0))
            else:
                return self.cut(node)
        except ValueError:
            return self.cut(node)
        self.saved += 1
        return new

    def _attention(self, mha) -> bool:
        if not isinstance(mha, fx.Node) or mha.op != "call_module" or len(mha.args) != 3:
            return False
        m = self.gm.get_submodule(mha.target)
        ok_kw = set(mha.kwargs) <= {"need_weights", "key_padding_mask", "average_attn_weights"}   # (per key)
        return isinstance(m, nn.MultiheadAttention) and m.batch_first and ok_kw and \
            all(u.op == "call_function" and u.target is operator.getitem and u.args[1] == 0 for u in mha.users)


def prune_rows(head: fx.GraphModule, *example) -> fx.GraphModule:
    """``head`` rewritten to compute only the token rows its ``t[:, k]`` selections read (module docstring);
    ``example``: inputs of a few rows, used to read shapes and to check the rewrite. Returns ``head`` itself when
    nothing changes or the rewrite does not agree with it."""
    try:
        gm = fx.GraphModule(head, _copy(head.graph))
        with torch.inference_mode():
            ShapeProp(gm).propagate(*example)
        saved, pushers = 0, []
        for node in [n for n in gm.graph.nodes if _row_index(n) is not None]:
            tokens = _shape(node.args[0])[1]
            k = _row_index(node) % tokens
            pusher = _Pusher(gm, tokens, slice(k, k + 1))
            with gm.graph.inserting_before(node):
                rows = pusher.push(node.args[0])
                if pusher.saved == 0:
                    continue
                new = gm.graph.call_function(operator.getitem, (rows, (slice(None), 0)))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            saved += pusher.saved
            pushers.append(pusher)
        if not saved:
            return head
        gm.graph.eliminate_dead_code()
        # a node still computed in full (other rows need it, e.g. as keys of a later attention) gives its row by
        # a cut rather than by computing the row a second time
        alive = set(gm.graph.nodes)
        for pusher in pushers:
            for old, new in pusher.memo.items():
                if old in alive and new in alive and not (new.target is operator.getitem and new.args[0] is old):
                    with gm.graph.inserting_before(new):
                        new.replace_all_uses_with(pusher.cut(old))
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        with torch.inference_mode():
            ref, out = head(*[e.clone() for e in example]), gm(*[e.clone() for e in example])
        scale = max(1.0, float(ref.abs().max()))
        if out.shape != ref.shape or not torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * scale):
            return head
        gm.pruned_rows = saved
        return gm
    except Exception:                     # best effort: the original head is always right
        return head


def _copy(graph: fx.Graph) -> fx.Graph:
    g = fx.Graph()
    env: dict = {}
    for n in graph.nodes:
        if n.op == "output":
            g.output(fx.map_arg(n.args[0], lambda a: env[a]))
        else:
            env[n] = g.node_copy(n, lambda a: env[a])
    return g
