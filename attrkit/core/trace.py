"""One torch.fx trace per model and call: ``traced(model, leaves)`` traces ``model`` (``leaves``: submodules kept as
one node each even when they have children, e.g. the layer a game is split at) and keeps the result for the rest
of the ``ak.explain`` call (:func:`trace_cache`), so the layer splitter (:mod:`attrkit.core.split`), the
receptive-field plans (:mod:`attrkit.games.chain`), the canonizers and the rule binder
(:mod:`attrkit.propagation.graph`) read the same graph. A module torch.fx already keeps whole (``nn.Conv2d``,
``nn.ReLU``) needs no leaf of its own: those traces are one. Failures are cached too.

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
>>> with trace_cache():
...     traced(m) is traced(m, (m[1],))
True
"""
from __future__ import annotations

import contextlib
import contextvars

from torch import fx, nn

_CACHE: contextvars.ContextVar = contextvars.ContextVar("attrkit_traces", default=None)


class _Tracer(fx.Tracer):
    def __init__(self, leaves=()):
        super().__init__()
        self.leaves = tuple(leaves) if isinstance(leaves, (tuple, list)) else (leaves,)     # modules, or one

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return any(m is leaf for leaf in self.leaves) or super().is_leaf_module(m, qualname)


@contextlib.contextmanager
def trace_cache():
    """Keep every trace made inside the block (the ``explain`` call); nested blocks share the outer cache."""
    if _CACHE.get() is not None:
        yield
        return
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def traced(model: nn.Module, leaves=()) -> fx.GraphModule:
    """``model`` traced by torch.fx with each module of ``leaves`` kept as one node (raises what tracing raised)."""
    plain = _Tracer()
    leaves = tuple(m for m in leaves if list(m.children()) or not plain.is_leaf_module(m, ""))   # not kept anyway
    cache = _CACHE.get()
    key = (id(model),) + tuple(sorted(id(m) for m in leaves))
    if cache is not None and key in cache:
        gm, err, _ = cache[key]
        if err is not None:
            raise err
        return gm
    try:
        gm, err = fx.GraphModule(model, _Tracer(leaves).trace(model)), None
    except Exception as e:      # (cached: the next reader fails the same way without tracing again)
        gm, err = None, e
    if cache is not None:
        cache[key] = (gm, err, (model, leaves))        # holds the objects: their ids stay theirs for the call
    if err is not None:
        raise err
    return gm
