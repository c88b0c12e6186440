"""``Problem``: everything a method needs about one ``explain`` call, validated once."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from .budget import rows_per_chunk
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
    _chunk: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.inputs.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's activation for inputs ``x``, computed in chunks."""
        parts = []
        step = self.chunk(grad=False)
        with self.tap() as tap:
            for s in range(0, x.shape[0], step):
                tap.reset()
                self.forward(x[s:s + step])
                parts.append(tap.output.detach())
        return torch.cat(parts)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target scores ``[B]`` for inputs ``x`` (rows = sample index of each row), in chunks."""
        rows = torch.arange(x.shape[0]) if rows is None else rows
        step = self.chunk(grad=False)
        return torch.cat([self.target(self.forward(x[s:s + step]), rows[s:s + step])
                          for s in range(0, x.shape[0], step)])

    def with_inputs(self, inputs: torch.Tensor, target: Target) -> "Problem":
        """The same problem on other inputs (e.g. noisy copies), outputs recomputed lazily by methods."""
        return replace(self, inputs=inputs, outputs=None, target=target, _chunk=dict(self._chunk))
