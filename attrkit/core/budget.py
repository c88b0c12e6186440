"""The one batching knob: how many rows go through the model per call.

``batch_size=`` fixes it; otherwise it is derived from ``max_memory`` (bytes for the autograd graph of one
chunk, default 1 GiB) by measuring the activations of one row, and capped at a size that is fast on the
device (on CPUs, chunks of 16-64 rows run about twice as fast per row as chunks of hundreds).
"""
from __future__ import annotations

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


def rows_per_chunk(model, x: torch.Tensor, batch_size: int | None = None, max_memory: int | None = None,
                   grad: bool = True) -> int:
    """Rows per model call: ``batch_size`` if given, else what fits ``max_memory`` (capped for speed)."""
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        return batch_size
    budget = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    if budget <= 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    per_row = max(1, bytes_per_row(model, x[:1], grad=grad))
    cap = GPU_CAP if x.device.type != "cpu" else CPU_CAP
    if not x.is_floating_point() and x.dtype != torch.bool:        # integer inputs (token ids), see above
        cap = max(cap, min(TOKEN_CAP, TOKEN_CHUNK_BYTES // per_row))
    return int(max(1, min(cap, budget // per_row)))
