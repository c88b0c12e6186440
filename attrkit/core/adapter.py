"""``ModelAdapter``: the user's model as both engines see it — one flat tensor in, one tensor out.

It unpacks the flat rows into the model's inputs (a tuple passed positionally, or a dict passed as keyword
arguments; see :mod:`attrkit.core.inputs`), appends the non-attributed ``forward_args`` / ``forward_kwargs``
and selects one tensor from a structured output (tuple, dict, dataclass, Hugging Face ``ModelOutput``; the
selector comes from :func:`attrkit.core.targets.resolve_output`). Non-attributed tensors whose first dimension
is ``N`` travel with their samples: every model call says which sample each row belongs to
(``with adapter.rows(r): adapter(x)``, done by ``Problem.forward(x, rows)``), and those tensors are indexed
by it, exactly as the attributed inputs are repeated and chunked. A call without rows on a batch other than
the ``N`` samples is refused rather than guessed.

The user's model is a registered submodule (``adapter.model``), so hooks, ``eval()`` and device moves reach
its layers; layer names given by users are looked up on the user's model, not on the adapter.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from .inputs import Layout, per_sample


class ModelAdapter(nn.Module):
    """``adapter(flat [B, D]) -> model(*inputs, *forward_args, **forward_kwargs)`` with one output selected."""

    def __init__(self, model, layout: Layout | None, n: int, forward_args: tuple = (),
                 forward_kwargs: dict | None = None, select: Callable | None = None):
        super().__init__()
        if isinstance(model, nn.Module):
            self.model = model
        else:
            object.__setattr__(self, "model", model)      # a plain callable: nothing to register
        self.layout, self.n, self.select = layout, int(n), select
        self.forward_args = tuple(forward_args)
        self.forward_kwargs = dict(forward_kwargs or {})
        self._rows: torch.Tensor | None = None

    @property
    def per_sample_args(self) -> bool:
        return any(per_sample(a, self.n) for a in self.forward_args) or \
            any(per_sample(a, self.n) for a in self.forward_kwargs.values())

    @contextlib.contextmanager
    def rows(self, rows: torch.Tensor | None):
        """Calls inside the block get the non-attributed per-sample tensors of samples ``rows``."""
        old = self._rows
        self._rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        try:
            yield self
        finally:
            self._rows = old

    def reindexed(self, index: torch.Tensor) -> "ModelAdapter":
        """The adapter for a batch whose row ``j`` is sample ``index[j]`` (e.g. noisy copies of each sample)."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        take = lambda a: a[index.to(a.device)] if per_sample(a, self.n) else a
        return ModelAdapter(self.model, self.layout, len(index), tuple(take(a) for a in self.forward_args),
                            {k: take(v) for k, v in self.forward_kwargs.items()}, self.select)

    def _take(self, value, batch):
        if not per_sample(value, self.n):
            return value
        rows = self._rows
        if rows is None:
            if isinstance(batch, torch.fx.Proxy):
                raise TypeError("forward arguments that travel with the samples cannot be traced with torch.fx")
            if batch == self.n:
                return value
            if self.n == 1 and not isinstance(batch, torch.fx.Proxy):   # every row belongs to the one sample
                return value.expand(batch, *value.shape[1:])
            raise RuntimeError(f"attrkit internal error: a model call on {batch} rows did not say which samples "
                               "they belong to, so the per-sample forward arguments cannot be chosen")
        if not isinstance(batch, torch.fx.Proxy) and len(rows) != batch:
            raise RuntimeError(f"attrkit internal error: {len(rows)} row indices for a batch of {batch}")
        return value[rows.to(value.device)]

    def forward(self, flat: torch.Tensor):
        inputs = self.layout.unpack(flat) if self.layout is not None else [flat]
        batch = flat.shape[0]
        args = [self._take(a, batch) for a in self.forward_args]
        kwargs = {k: self._take(v, batch) for k, v in self.forward_kwargs.items()}
        if self.layout is not None and self.layout.kind == "dict":
            kwargs.update(zip(self.layout.names, inputs))
            out = self.model(*args, **kwargs)
        else:
            out = self.model(*inputs, *args, **kwargs)
        return self.select(out) if self.select is not None else out

    def extra_repr(self) -> str:
        parts = []
        if self.layout is not None:
            parts.append(f"inputs=[{self.layout.describe()}]")
        if self.forward_args:
            parts.append(f"forward_args={len(self.forward_args)}")
        if self.forward_kwargs:
            parts.append(f"forward_kwargs={sorted(self.forward_kwargs)}")
        if self.select is not None:
            parts.append(f"output={getattr(self.select, 'label', 'selected')}")
        return ", ".join(parts)


def rows_of(model, rows):
    """``with rows_of(model, rows):`` — tell an adapter which samples the next calls hold (no-op otherwise)."""
    if isinstance(model, ModelAdapter):
        return model.rows(rows)
    return contextlib.nullcontext()
