"""Layer table of a model (layer, output shape, parameter count), as torchinfo prints it.

Uses ``torchinfo`` when it is installed, otherwise forward hooks on every module: a row per
module call, in call order, indented by depth (``Linear (1-1)`` = depth 1, first at that depth
under its parent). A module called twice (the lecture's shared ReLU) appears twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["summary", "ModelSummary", "LayerRow"]


@dataclass
class LayerRow:
    name: str            # module path ("" for the root)
    type: str            # class name
    depth: int
    index: int           # position among the calls under the same parent call
    output_shape: list[int] | None
    params: int          # parameters of this module (recursive); 0 on repeated calls
    repeated: bool = False

    @property
    def label(self) -> str:
        return f"{self.type} ({self.depth}-{self.index})"


@dataclass
class ModelSummary:
    """``str()`` is the table; numbers in ``total_params``, ``trainable_params``, ``rows``."""

    model_name: str
    input_size: tuple
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    backend: str = "hooks"
    _text: str | None = None

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        cells = [(("  " * (r.depth - 1)) + r.label, str(r.output_shape) if r.output_shape else "--",
                  "--" if r.repeated else f"{r.params:,}") for r in self.rows]
        head = ("Layer (type (depth-idx))", "Output Shape", "Param #")
        w0 = max([len(head[0])] + [len(c[0]) for c in cells])
        w1 = max([len(head[1])] + [len(c[1]) for c in cells])
        w2 = max([len(head[2])] + [len(c[2]) for c in cells])
        width = w0 + w1 + w2 + 6
        line = "=" * width
        out = [line, f"{head[0]:<{w0}}   {head[1]:<{w1}}   {head[2]:>{w2}}", line]
        out += [f"{a:<{w0}}   {b:<{w1}}   {c:>{w2}}" for a, b, c in cells]
        out += [line, f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.non_trainable_params:,}", line]
        return "\n".join(out)

    __repr__ = __str__


def _shape(out: Any) -> list[int] | None:
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return list(out[0].shape)
    return None


def _make_input(model: nn.Module, input_size: Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(input_size, torch.Tensor):
        return input_size
    if not isinstance(input_size, (tuple, list)) or not input_size or \
            not all(isinstance(d, int) and d > 0 for d in input_size):
        raise ValueError(f"input_size must be a tuple of positive ints such as (10, 2), "
                         f"or an example tensor; got {input_size!r}.")
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(*input_size, device=dev, dtype=dtype)


def _hook_summary(model: nn.Module, x: torch.Tensor) -> ModelSummary:
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerRow] = []
    stack: list[list[int]] = [[0]]  # per open call: counter of its children
    seen: set[int] = set()
    pending: list[LayerRow] = []

    def pre(mod, _inp):
        counter = stack[-1]
        counter[0] += 1
        row = LayerRow(names.get(mod, "?"), type(mod).__name__, len(stack), counter[0], None,
                       0 if id(mod) in seen else sum(p.numel() for p in mod.parameters()),
                       id(mod) in seen)
        seen.add(id(mod))
        rows.append(row)
        pending.append(row)
        stack.append([0])

    def post(mod, _inp, out):
        stack.pop()
        row = pending.pop()
        row.output_shape = _shape(out)

    handles = []
    for mod in model.modules():
        if mod is model:
            continue
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = list(model.parameters())
    uniq = {id(p): p for p in params}.values()
    total = sum(p.numel() for p in uniq)
    trainable = sum(p.numel() for p in uniq if p.requires_grad)
    return ModelSummary(type(model).__name__, tuple(x.shape), rows, total, trainable, "hooks")


def summary(model: nn.Module, input_size: Sequence[int] | torch.Tensor,
            backend: str = "auto") -> ModelSummary:
    """Layer table of `model` run on zeros of `input_size` (batch dimension included).

    `backend`: "auto" (torchinfo if installed, else hooks), "torchinfo" or "hooks".
    ``.total_params`` counts each parameter once, e.g. 37 for ``SimpleMLP(nvars=2)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary() needs an nn.Module, got {type(model).__name__}.")
    if backend not in ("auto", "torchinfo", "hooks"):
        raise ValueError(f"backend must be 'auto', 'torchinfo' or 'hooks', got {backend!r}.")
    x = _make_input(model, input_size)
    base = _hook_summary(model, x)
    if backend == "hooks":
        return base
    try:
        import torchinfo
    except ImportError:
        if backend == "torchinfo":
            raise ImportError("backend='torchinfo' needs `pip install torchinfo`.") from None
        return base
    stats = torchinfo.summary(model, input_data=x, verbose=0)
    base.backend = "torchinfo"
    base._text = str(stats)
    base.total_params = int(stats.total_params)
    base.trainable_params = int(stats.trainable_params)
    return base

