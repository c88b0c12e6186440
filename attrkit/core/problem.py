"""``Problem``: everything a method needs about one ``explain`` call, validated once."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from .adapter import ModelAdapter
from .budget import rows_per_chunk
from .inputs import Layout
from .modules import LayerTap, call_model
from .targets import Target


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

    def chunk(self, grad: bool = True) -> int:
        """Rows per model call under the batch size / memory budget."""
        if grad not in self._chunk:
            self._chunk[grad] = rows_per_chunk(self.model, self.inputs, self.batch_size, self.max_memory, grad)
        return self._chunk[grad]

    def tap(self) -> LayerTap:
        if self.layer is None:
            raise ValueError("this method needs layer=")
        return LayerTap(self.layer, self.layer_name or "layer")

    @torch.no_grad()
    def activation(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's activation for inputs ``x`` (row ``j`` standing for sample ``rows[j]``, default ``j``),
        computed in chunks."""
        parts = []
        step = self.chunk(grad=False)
        if rows is None:
            if x.shape[0] not in (1, self.n) and isinstance(self.model, ModelAdapter) and self.model.per_sample_args:
                raise ValueError(f"{x.shape[0]} reference rows (a background set) for {self.n} samples: with "
                                 "per-sample forward arguments each row must belong to a sample; give one "
                                 "reference per sample")
            rows = torch.arange(x.shape[0])
        with self.tap() as tap:
            for s in range(0, x.shape[0], step):
                tap.reset()
                self.forward(x[s:s + step], rows[s:s + step])
                parts.append(tap.output.detach())
        return torch.cat(parts)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target scores ``[B]`` for inputs ``x`` (rows = sample index of each row), in chunks."""
        rows = torch.arange(x.shape[0]) if rows is None else rows
        step = self.chunk(grad=False)
        return torch.cat([self.target(self.forward(x[s:s + step], rows[s:s + step]), rows[s:s + step])
                          for s in range(0, x.shape[0], step)])

    def with_inputs(self, inputs: torch.Tensor, target: Target, rows: torch.Tensor | None = None) -> "Problem":
        """The same problem on other inputs (e.g. noisy copies), outputs recomputed lazily by methods.
        ``rows[j]``: the sample that row ``j`` of ``inputs`` stands for (default: the same samples)."""
        model = self.model
        if rows is not None and isinstance(model, ModelAdapter):
            model = model.reindexed(rows)
        return replace(self, model=model, inputs=inputs, outputs=None, target=target, _chunk=dict(self._chunk))
