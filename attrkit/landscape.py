"""The loss landscape around trained weights (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss
Landscape of Neural Nets").

``L(alpha, beta) = loss(theta + alpha d1 + beta d2)`` on a grid of ``alpha, beta`` in ``[-span, span]``, with
``theta`` the trained weights and ``d1, d2`` random Gaussian directions, **filter-normalised**: every filter of
``d`` (a row of a weight matrix, an output channel of a convolution: slice ``i`` along dim 0) is rescaled to the
norm of the same filter of ``theta``, ``d_i <- d_i / ||d_i|| * ||theta_i||``. A network with ReLUs computes the
same function when one layer's filters are scaled by ``c`` and the next layer's by ``1/c``; filter normalisation
scales the directions with them, so the picture does not change (plain random directions would). As in the
paper, biases and batch-norm parameters (1-D tensors) get a zero direction (``bias="zero"``; ``"filter"``
normalises them like weights, each entry its own filter); buffers (BN running statistics) are never moved.

The model is evaluated in eval mode, the data in batches sized to ``max_memory`` (or ``batch_size=``); the loss
is the mean over all rows. The weights are restored afterwards, also after an error.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .core.budget import DEFAULT_MAX_MEMORY, bytes_per_row, check_budget
from .core.modules import eval_mode
from .progress import bar as progress_bar, call_bar

NORMS = ("filter", "layer", "none")
BIASES = ("zero", "filter")
MAX_BATCH = 1024


@dataclass
class Landscape:
    """The loss on the grid: ``loss`` is ``[steps]`` (one direction) or ``[steps, steps]`` (``loss[i, j]`` at
    ``alpha = alphas[i]``, ``beta = betas[j]``); ``center`` is the loss at the trained weights."""
    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    center: float
    loss_name: str
    info: dict = field(default_factory=dict)

    @property
    def directions(self) -> int:
        return 1 if self.betas is None else 2

    def plot(self, kind: str = "auto", *, title: str | None = None, path=None, log: bool = False):
        """The 1-D curve, or for two directions the contour map and the 3-D surface side by side
        (``kind="contour"`` / ``"surface"`` for one of them). Returns the matplotlib ``Figure``."""
        from .viz.landscape import plot_landscape
        return plot_landscape(self, kind=kind, title=title, path=path, log=log)

    def table(self) -> list[dict]:
        """The grid as rows ``{"alpha", ("beta",) "loss"}`` (for reports and CSV)."""
        if self.betas is None:
            return [{"alpha": float(a), "loss": float(v)} for a, v in zip(self.alphas, self.loss)]
        return [{"alpha": float(a), "beta": float(b), "loss": float(self.loss[i, j])}
                for i, a in enumerate(self.alphas) for j, b in enumerate(self.betas)]


def loss_landscape(model: nn.Module, data, loss=None, *, directions: int = 2, steps: int = 21,
                   span: float = 1.0, seed: int = 0, norm: str = "filter", bias: str = "zero",
                   batch_size: int | None = None, max_memory: int | None = None,
                   progress: bool | None = None) -> Landscape:
    """The loss around the trained weights along ``directions`` (1 or 2) random filter-normalised directions.

    data: an attrkit ``Dataset`` (``.x``, ``.y``; ``x`` may be a tuple for several inputs), a tuple ``(x, y)``
        of tensors, or an iterable of ``(x, y)`` batches (a ``DataLoader``; then it is read once per grid point).
    loss: "cross_entropy" | "bce" | "mse" | a callable ``(output, y) -> loss`` (a mean, or one value per row,
        then averaged); None picks cross-entropy
        for integer targets (BCE for one output), MSE for float targets (as ``attrkit.train.fit`` does).
    steps: grid points per direction over ``[-span, span]`` (odd puts the trained weights on the grid).
    seed: draws the directions (the same seed gives the same directions for models of the same shapes).
    norm: "filter" (Li et al.), "layer" (each tensor to the norm of its weights) or "none" (raw Gaussian).
    bias: "zero" (biases and BN parameters stay put, as in the paper) or "filter".

    >>> import torch, attrkit as ak
    >>> m = torch.nn.Linear(2, 2); x, y = torch.randn(32, 2), torch.randint(0, 2, (32,))
    >>> ls = ak.loss_landscape(m, (x, y), directions=1, steps=5, progress=False)
    >>> ls.loss.shape, bool(abs(ls.loss[2] - ls.center) < 1e-6)
    ((5,), True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"loss_landscape moves the model's weights: give a torch.nn.Module, got {type(model).__name__}")
    if directions not in (1, 2) or isinstance(directions, bool):
        raise ValueError(f"directions must be 1 (a curve) or 2 (a surface), got {directions!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (grid points per direction), got {steps!r}")
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not span > 0 or not math.isfinite(span):
        raise ValueError(f"span must be a positive number (the grid covers [-span, span]), got {span!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {BIASES}, got {bias!r}")
    batch_size, max_memory = check_budget(batch_size, max_memory)
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters: there is no landscape to draw")
    with eval_mode(model, warn=False):      # (sizing the batches runs the model: no BN statistics updates)
        batches, name, criterion = _data(model, data, loss, batch_size, max_memory)
    gen = torch.Generator().manual_seed(int(seed))
    dirs = [random_direction(params, gen, norm, bias) for _ in range(directions)]
    alphas = np.linspace(-span, span, steps)
    grid = [(a,) for a in alphas] if directions == 1 else [(a, b) for a in alphas for b in alphas]
    theta = [p.detach().clone() for p in params]
    start = time.perf_counter()
    values = np.empty(len(grid))
    with eval_mode(model, warn=False), torch.no_grad(), call_bar(progress, "attrkit landscape", unit="point"):
        b = progress_bar(len(grid) + 1, "landscape", progress, unit="point")
        try:
            center = _mean_loss(model, batches, criterion)
            b.update(1)
            for k, coords in enumerate(grid):
                for p, t, *ds in zip(params, theta, *dirs):
                    p.copy_(t)
                    for c, d in zip(coords, ds):
                        p.add_(d, alpha=float(c))
                values[k] = _mean_loss(model, batches, criterion)
                b.update(1)
        finally:
            for p, t in zip(params, theta):
                p.copy_(t)
            b.close()
    shape = (steps,) if directions == 1 else (steps, steps)
    info = {"seconds": time.perf_counter() - start, "n_points": len(grid), "seed": int(seed), "norm": norm,
            "bias": bias, "span": float(span), "n_rows": sum(_rows(b) for b in batches) if isinstance(batches, list)
            else None, "method": "Li et al. 2018, filter-normalised random directions" if norm == "filter" else norm}
    return Landscape(alphas=alphas, betas=alphas.copy() if directions == 2 else None, loss=values.reshape(shape),
                     center=float(center), loss_name=name, info=info)


def random_direction(params, gen: torch.Generator, norm: str = "filter", bias: str = "zero") -> list:
    """One random direction, a tensor per parameter, normalised as in :func:`loss_landscape`. Drawn in float64
    on the CPU from ``gen`` (so a seed gives the same direction on any device and dtype), then cast."""
    out = []
    for p in params:
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        w = p.detach().to("cpu", torch.float64)
        if p.dim() <= 1 and bias == "zero":
            d.zero_()
        elif norm == "filter":
            d2, w2 = d.reshape(d.shape[0], -1) if d.dim() else d.reshape(1, 1), w.reshape(w.shape[0], -1) \
                if w.dim() else w.reshape(1, 1)
            d2.mul_(w2.norm(dim=1, keepdim=True) / (d2.norm(dim=1, keepdim=True) + 1e-10))
            d = d2.reshape(p.shape)
        elif norm == "layer":
            d.mul_(w.norm() / (d.norm() + 1e-10))
        out.append(d.to(p.device, p.dtype))
    return out


# ------------------------------------------------------------------------------------------------- data
def _data(model, data, loss, batch_size, max_memory):
    """-> (batches: list of (inputs tuple, y) or a re-iterable, loss name, criterion)."""
    from .data.dataset import Dataset
    from .train import _loss_fn, outputs_probabilities
    device = _device(model)
    if isinstance(data, Dataset) or (isinstance(data, (tuple, list)) and len(data) == 2 and
                                     isinstance(data[1], torch.Tensor) and
                                     isinstance(data[0], (torch.Tensor, tuple, list))):
        x, y = (data.x, data.y) if isinstance(data, Dataset) else data
        xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        n = int(y.shape[0])
        if any(int(t.shape[0]) != n for t in xs):
            raise ValueError(f"the data's inputs and targets have different numbers of rows "
                             f"({[int(t.shape[0]) for t in xs]} vs {n})")
        if n == 0:
            raise ValueError("the data has no rows")
        rows = batch_size or _rows_for(model, xs, device, max_memory)
        batches = [(tuple(t[s:s + rows] for t in xs), y[s:s + rows]) for s in range(0, n, rows)]
        first = batches[0]
    elif hasattr(data, "__iter__") and not isinstance(data, (torch.Tensor, str, dict)):
        if iter(data) is data:
            raise TypeError("the data is a one-pass iterator (a generator); the loss is evaluated once per grid point, "
                            "so give a re-iterable: a DataLoader, a list of (x, y) batches, or (x, y) tensors")
        batches = data
        first = next(iter(data), None)
        if first is None:
            raise ValueError("the data loader gave no batches")
        first = _split_batch(first)
    else:
        raise TypeError(f"data must be an attrkit Dataset, a tuple (x, y) of tensors or an iterable of (x, y) "
                        f"batches, got {type(data).__name__}")
    x0, y0 = first
    with torch.no_grad():
        out = model(*(t[:1].to(device) for t in x0))
    n_out = 1 if out.dim() == 1 else int(out.shape[-1])
    name, criterion = _loss_fn(loss, y0, getattr(data, "is_classification", None), n_out,
                               outputs_probabilities(model))
    return batches, name, criterion


def _split_batch(b):
    if isinstance(b, (tuple, list)) and len(b) >= 2:
        *x, y = b
        return tuple(x), y
    raise ValueError("each batch of the data loader must be (x, y) (or (x1, x2, ..., y) for several inputs)")


def _rows(b) -> int:
    return int(_split_batch(b)[1].shape[0])


def _rows_for(model, xs, device, max_memory) -> int:
    budget = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    if len(xs) == 1:
        per = bytes_per_row(model, xs[0][:1].to(device), grad=False)
    else:
        per = sum(t[:1].numel() * t.element_size() for t in xs) * 64
    return max(1, min(MAX_BATCH, budget // max(per, 1)))


def _mean_loss(model, batches, criterion) -> float:
    device = _device(model)
    total, n = 0.0, 0
    for b in batches:
        x, y = _split_batch(b) if not (isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], tuple)) else b
        out = model(*(t.to(device) for t in x))
        k = int(y.shape[0])
        total += float(torch.as_tensor(criterion(out, y.to(device))).mean()) * k   # a per-row loss is averaged
        n += k
    if n == 0:
        raise ValueError("the data gave no rows")
    return total / n


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
