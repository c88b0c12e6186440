"""The default backend: every shard in this process, one after the other, with one model."""
from __future__ import annotations

from typing import Callable, Iterable

from .worker import Plan, ShardWorker


def run_local(plan: Plan, factory, source, shards: Iterable[int], on_done: Callable[[dict], None],
              model=None) -> dict:
    """Compute ``shards`` in order; ``on_done(summary)`` after each is on disk. ``model``: an already built
    model (the driver builds one to fingerprint it; reusing it means the factory runs once)."""
    worker = ShardWorker(factory, source, plan, model=model)
    for k in shards:
        on_done(worker.run(k))
    return {"workers": 1}
