"""``Problem``: everything a method needs about one ``explain`` call, validated once.

``build_problem`` is the one way to make one (``ak.explain`` and ``Game(model, x)`` call it); ``Problem.run`` is
the one loop that runs the model over rows in chunks (the chunk sizes come from :mod:`attrkit.core.budget`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from .adapter import ModelAdapter
from .budget import bytes_per_row, check_budget, coalition_rows, rows_per_chunk
from .inputs import Layout
from .modules import LayerTap, call_model, eval_mode, resolve_layer, strip_compiled_prefix, unwrap_compiled
from .targets import Target


def in_chunks(n: int, step: int, fn) -> torch.Tensor:
    """The one chunk loop: ``fn(start, stop)`` for rows ``start:stop`` of ``n`` in chunks of ``step``, the
    results concatenated (``Problem.run``, the metrics' scorer)."""
    return torch.cat([fn(s, min(s + step, n)) for s in range(0, n, step)])


@dataclass
class Result:
    """What a method returns; ``explain`` wraps it into an :class:`~attrkit.Attribution`."""
    values: torch.Tensor
    info: dict
    baseline: Any = None
    players: torch.Tensor | None = None


@dataclass
class Problem:
    model: Callable
    inputs: torch.Tensor
    outputs: torch.Tensor
    target: Target
    layer_name: str | None = None
    layer: nn.Module | None = None
    batch_size: int | None = None
    max_memory: int | None = None
    seed: int | None = None
    progress: bool | None = None
    layout: Layout | None = None     # several inputs packed into ``inputs`` [N, D] (see core.inputs)
    structured: Any = None           # the inputs in the user's structure (tensor, tuple or dict), validated
    compiled: str = ""               # how a torch.compile'd model was unwrapped ("" if it was not)
    user_model: Any = None           # the user's model (unwrapped), which ``model`` calls
    shared: Any = None               # the method's own pass that computed ``outputs`` (a spec's ``shared_pass``)
    _chunk: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def model_layer_name(self) -> str | None:
        """``layer_name`` as a name in ``self.model.named_modules()`` (the adapter holds the user's model as
        ``model``)."""
        if self.layer_name and isinstance(self.model, ModelAdapter):
            return f"model.{self.layer_name}"
        return self.layer_name

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The model's outputs for ``x``; ``rows`` says which sample each row belongs to (needed when the
        model takes non-attributed per-sample arguments, e.g. an attention mask; see ``core.adapter``)."""
        if rows is not None and isinstance(self.model, ModelAdapter):
            with self.model.rows(rows):
                return call_model(self.model, x)
        return call_model(self.model, x)

    def chunk(self, grad: bool = True, coalitions: bool = False) -> int:
        """Rows per model call under the batch size / memory budget (``coalitions``: the larger no-grad chunks of
        coalition games, :func:`core.budget.coalition_rows`, unless ``batch_size`` is given). One row's memory is
        measured once (one forward pass of one row) and serves every kind of chunk."""
        key = "coalitions" if coalitions and self.batch_size is None else grad
        if key not in self._chunk:
            per_row = None
            if self.batch_size is None:
                if "row_bytes" not in self._chunk:
                    self._chunk["row_bytes"] = bytes_per_row(self.model, self.inputs[:1], grad=False)
                per_row = self._chunk["row_bytes"]
            self._chunk[key] = coalition_rows(self.inputs, per_row, self.max_memory) if key == "coalitions" else \
                rows_per_chunk(self.model, self.inputs, self.batch_size, self.max_memory, grad,
                               per_row=None if per_row is None else per_row * (3 if grad else 1))
        return self._chunk[key]

    def tap(self) -> LayerTap:
        if self.layer is None:
            raise ValueError("this method needs layer=")
        return LayerTap(self.layer, self.layer_name or "layer")

    @torch.no_grad()
    def activation(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's activation for inputs ``x`` (row ``j`` standing for sample ``rows[j]``, default ``j``),
        computed in chunks."""
        if rows is None and x.shape[0] not in (1, self.n) and isinstance(self.model, ModelAdapter) \
                and self.model.per_sample_args:
            raise ValueError(f"{x.shape[0]} reference rows (a background set) for {self.n} samples: with "
                             "per-sample forward arguments each row must belong to a sample; give one "
                             "reference per sample")
        step = self.chunk(grad=False)          # (its memory probe runs the model: before the tap)
        rows = torch.arange(x.shape[0]) if rows is None else rows
        with self.tap() as tap:
            def chunk(s, e):
                tap.reset()
                self.forward(x[s:e], rows[s:e])
                return tap.output.detach()
            return in_chunks(x.shape[0], step, chunk)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target scores ``[B]`` for inputs ``x`` (rows = sample index of each row), in chunks."""
        return self.run(x, rows, self.target)

    def run(self, x: torch.Tensor, rows: torch.Tensor | None = None, then: Callable | None = None,
            step: int | None = None) -> torch.Tensor:
        """The one chunk loop: the model on ``x`` (row ``j`` standing for sample ``rows[j]``, default ``j``) in
        chunks of ``step`` rows (default ``chunk(grad=False)``), each chunk's outputs passed through
        ``then(outputs, rows)`` when given, concatenated."""
        rows = torch.arange(x.shape[0]) if rows is None else rows
        step = self.chunk(grad=False) if step is None else step
        def chunk(s, e):
            out = self.forward(x[s:e], rows[s:e])
            return out if then is None else then(out, rows[s:e])
        return in_chunks(x.shape[0], step, chunk)

    def at_layer(self, name: str | None, layer: nn.Module | None) -> "Problem":
        """The same problem at another layer."""
        return replace(self, layer_name=name, layer=layer, _chunk=dict(self._chunk))

    def with_inputs(self, inputs: torch.Tensor, target: Target, rows: torch.Tensor | None = None) -> "Problem":
        """The same problem on other inputs (e.g. noisy copies), outputs recomputed lazily by methods.
        ``rows[j]``: the sample that row ``j`` of ``inputs`` stands for (default: the same samples)."""
        model = self.model
        if rows is not None and isinstance(model, ModelAdapter):
            model = model.reindexed(rows)
        return replace(self, model=model, inputs=inputs, outputs=None, target=target, _chunk=dict(self._chunk))


def build_problem(model, x, target=None, *, layer=None, forward_args=None, forward_kwargs=None,
                  batch_size: int | None = None, max_memory: int | None = None, seed: int | None = None,
                  progress: bool | None = None, shared_pass=None) -> Problem:
    """Validate one call and run the model once on ``x`` (in eval mode, without gradients): the batching knobs,
    a ``torch.compile``'d model (unwrapped), the inputs and forward arguments (:func:`core.call.first_prepare`), the
    output and target, and the layer. Errors of the model's first call name the shapes and the failing layer.
    ``shared_pass(model, layer)``: a method's own pass (a context manager, or None) that this forward runs under, so
    the method reuses it instead of running the model again."""
    from .call import first_prepare
    batch_size, max_memory = check_budget(batch_size, max_memory)
    model, compiled = unwrap_compiled(model)
    layer = strip_compiled_prefix(layer) if compiled else layer
    shared = shared_pass(model, layer) if shared_pass is not None else None
    with eval_mode(model, warn=False):
        prep = first_prepare(model, x, target, forward_args, forward_kwargs, batch_size, context=shared)
    name, mod = resolve_layer(model, layer) if layer is not None else (None, None)
    return Problem(model=prep.model, inputs=prep.inputs, outputs=prep.outputs, target=prep.target, layer_name=name,
                   layer=mod, batch_size=batch_size, max_memory=max_memory, seed=seed, progress=progress,
                   layout=prep.layout, structured=prep.structured, compiled=compiled or "",
                   user_model=model, shared=shared)
