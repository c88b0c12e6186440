"""The one batching knob: how many rows go through the model per call.

``batch_size=`` fixes it; otherwise it is derived from ``max_memory`` (bytes for the autograd graph of one
chunk, default 1 GiB) by measuring the activations of one row, and capped at a size that is fast on the
device (on CPUs, chunks of 16-64 rows run about twice as fast per row as chunks of hundreds).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

DEFAULT_MAX_MEMORY = 1 << 30
CPU_CAP = 32
GPU_CAP = 256
# token ids: a row is a short sequence (tens of KB of activations) and a transformer call has a fixed Python
# cost of milliseconds, so chunks of 32 rows spend most of their time in overhead; chunks of about 32 MB
# (hundreds of rows) ran IG at the text zoo model's embedding 1.5-2x faster than chunks of 32 (2 CPU cores)
TOKEN_CHUNK_BYTES = 32 << 20
TOKEN_CAP = 1024
# coalition games (no autograd): small models get big chunks (fewer calls); tiny models run 2-4x faster per row
# in chunks of hundreds
GAME_CHUNK_BYTES = 128 << 20     # activations per no-grad chunk
GAME_CAP = 1024
HEAD_CAP = 8        # the part of a model after a layer may take this many times the cap (cheap rows, fewer calls)


def bytes_per_row(model, row: torch.Tensor, grad: bool = True) -> int:
    """Activation bytes one input row costs (sum of every leaf module's output), times 3 with autograd."""
    total = [row.numel() * row.element_size()]
    handles = []
    if isinstance(model, nn.Module) and not isinstance(model, torch.jit.ScriptModule):   # (no hooks on scripts)
        def hook(_m, _a, out):
            if isinstance(out, torch.Tensor):
                total[0] += out.numel() * out.element_size()
        for m in model.modules():
            if len(list(m.children())) == 0 and not isinstance(m, torch.jit.ScriptModule):
                handles.append(m.register_forward_hook(hook))
    from .adapter import rows_of
    try:
        with torch.no_grad(), rows_of(model, torch.arange(row.shape[0])):
            out = model(row)
        if len(handles) == 0 and isinstance(out, torch.Tensor):
            total[0] = max(total[0], 64 * row.numel() * row.element_size())
    finally:
        for h in handles:
            h.remove()
    return total[0] * (3 if grad else 1)


def check_budget(batch_size=None, max_memory=None) -> tuple[int | None, int | None]:
    """Validate the batching knobs where they enter (``explain``, ``Game``): a positive whole number of rows and
    a positive number of bytes, or None. Returns them as plain ints."""
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number of rows per model call (or None to derive "
                             f"it from max_memory), got {batch_size!r}")
        batch_size = int(batch_size)
    if max_memory is not None:
        if isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Real) or not max_memory > 0 \
                or not math.isfinite(max_memory):
            raise ValueError(f"max_memory must be a positive number of bytes (e.g. 2**30), got {max_memory!r}")
        max_memory = int(max_memory)
    return batch_size, max_memory


def rows_per_chunk(model, x: torch.Tensor, batch_size: int | None = None, max_memory: int | None = None,
                   grad: bool = True, per_row: int | None = None) -> int:
    """Rows per model call: ``batch_size`` if given, else what fits ``max_memory`` (capped for speed).
    ``per_row``: the bytes one row costs (:func:`bytes_per_row` with ``grad``), when already measured."""
    batch_size, max_memory = check_budget(batch_size, max_memory)
    if batch_size is not None:
        return batch_size
    per_row = max(1, bytes_per_row(model, x[:1], grad=grad) if per_row is None else per_row)
    cap = device_cap(x)
    if not x.is_floating_point() and x.dtype != torch.bool:        # integer inputs (token ids), see above
        cap = max(cap, min(TOKEN_CAP, TOKEN_CHUNK_BYTES // per_row))
    return fit_rows(per_row, max_memory, cap)


def coalition_rows(x: torch.Tensor, per_row: int, max_memory: int | None = None) -> int:
    """Rows per model call for coalition evaluation (no autograd, no ``batch_size``) when a row costs ``per_row``
    bytes without autograd: as many rows as keep one chunk's activations near ``GAME_CHUNK_BYTES`` (at least the
    device cap, at most ``GAME_CAP``), within ``max_memory``."""
    per_row = max(1, per_row)
    return fit_rows(per_row, max_memory, max(device_cap(x), min(GAME_CAP, GAME_CHUNK_BYTES // per_row)))


def device_cap(x: torch.Tensor) -> int:
    return GPU_CAP if x.device.type != "cpu" else CPU_CAP


def fit_rows(per_row: int, max_memory: int | None, want: int) -> int:
    """``want`` rows per call, fewer when ``want`` rows of ``per_row`` bytes exceed ``max_memory`` (at least 1)."""
    budget = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    if budget <= 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    return int(max(1, min(want, budget // max(1, per_row))))

