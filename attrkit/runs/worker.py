"""One shard of work: load a block of samples, explain it with one ``ak.explain`` call, write the shard.

The same :class:`ShardWorker` runs in-process (local backend) and inside each Ray actor, so both backends
compute identical numbers. The model is built once when the worker is made; only shard numbers travel
afterwards.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.json_values import jsonable
from .store import write_shard


@dataclass
class Plan:
    """Everything a worker needs to compute any shard (picklable, shipped once per worker)."""
    out: str
    method: str
    n: int
    shard_size: int
    seed: int
    options: dict = field(default_factory=dict)
    target: Any = None                 # None (predicted class) | int | "label" | callable
    layer: Any = None
    noise: Any = None
    batch_size: int | None = None      # rows per model call inside explain (the core's one batching knob)
    max_memory: int | None = None
    device: str | None = None

    @property
    def n_shards(self) -> int:
        return max(1, -(-self.n // self.shard_size))

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.n)

    def shard_seed(self, k: int) -> int:
        """Seed of shard ``k``, derived from the run seed and the shard index only (NumPy ``SeedSequence``),
        so any split of the shards over workers, and any resume, gives the same numbers."""
        return int(np.random.SeedSequence([int(self.seed), int(k)]).generate_state(1)[0])


class ShardWorker:
    """Builds the model once; :meth:`run` computes and writes one shard and returns its summary."""

    def __init__(self, factory, source, plan: Plan, model=None):
        self.model = factory.build() if model is None else model
        if plan.device is not None and isinstance(self.model, torch.nn.Module):
            self.model = self.model.to(plan.device)
        self.source, self.plan = source, plan
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, k: int) -> dict:
        from ..api import explain
        p = self.plan
        start, stop = p.bounds(k)
        t0 = time.perf_counter()
        batch = self.source.load(start, stop)
        errors = [{"index": int(i), "id": sid, "reason": reason, "shard": k} for i, sid, reason in batch.errors]
        record: dict = {"shard": k, "start": start, "stop": stop, "n": len(batch.ids), "n_errors": len(errors),
                        "index": batch.index.tolist(), "ids": list(batch.ids), "seed": p.shard_seed(k),
                        "labels": None if batch.labels is None else jsonable(batch.labels)}
        if batch.x is not None and len(batch.ids):
            target = p.target
            if isinstance(target, str) and target == "label":
                if batch.labels is None or batch.labels.dim() != 1 or batch.labels.is_floating_point():
                    raise ValueError("target='label' needs integer class labels [N] in the data set")
                target = batch.labels
            a = explain(self.model, batch.x, method=p.method, target=target, layer=p.layer, noise=p.noise,
                        batch_size=p.batch_size, max_memory=p.max_memory, seed=p.shard_seed(k), progress=False,
                        **shard_options(p.options, batch.index, p.n))
            if a.multi:      # several inputs: one flat row per sample, the layout in the record
                parts = list(a.values.values()) if isinstance(a.values, dict) else list(a.values)
                values = np.concatenate([v.detach().cpu().reshape(v.shape[0], -1).numpy().astype(np.float32)
                                         for v in parts], 1)
                record["layout"] = {"kind": "dict" if isinstance(a.values, dict) else "tuple",
                                    "names": a.input_names, "shapes": [list(v.shape[1:]) for v in parts]}
                info = {k: v for k, v in a.info.items() if not isinstance(v, (tuple, dict)) or
                        not all(hasattr(u, "shape") for u in (v.values() if isinstance(v, dict) else v))}
            else:
                values = a.values.detach().cpu().numpy().astype(np.float32, copy=False)
                info = a.info
            record.update(targets=jsonable(a.target), outputs=jsonable(a.outputs),
                          info=jsonable(info), shape=list(values.shape[1:]))
        else:
            values = np.zeros((0,), dtype=np.float32)
            record.update(targets=[], outputs=[], info={}, shape=None)
        record["seconds"] = time.perf_counter() - t0
        record["worker"] = self.where
        write_shard(p.out, k, values, record, errors)
        return {"shard": k, "n": record["n"], "n_errors": len(errors), "seconds": record["seconds"],
                "worker": self.where}


def shard_options(options: dict, index, n: int) -> dict:
    """The method options for one shard: forward arguments with one row per sample of the data set (tensors whose
    first dimension is ``n``) cut to the shard's samples ``index``; everything else as given."""
    if "forward_args" not in options and "forward_kwargs" not in options:
        return options
    index = torch.as_tensor(index, dtype=torch.long)
    cut = lambda v: v[index.to(v.device)] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v
    out = dict(options)
    if options.get("forward_args") is not None:
        out["forward_args"] = tuple(cut(v) for v in options["forward_args"])
    if options.get("forward_kwargs") is not None:
        out["forward_kwargs"] = {k: cut(v) for k, v in options["forward_kwargs"].items()}
    return out
