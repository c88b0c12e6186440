"""Players of a token layer: the patch tokens of a vision transformer block (class/register tokens are no
players: label -1, kept as they are), the token positions of a text model, or the cells of a channels-last map.

``players=None`` / ``"cells"``: one player per patch token (per position); ``"grid:K"``: K x K blocks of the patch
grid; ``"channels"``: one player per embedding dimension. The layout comes from :mod:`attrkit.core.token_grid`;
``info["token_grid"]`` records it so that ``Attribution.heatmap()`` draws the values on the patch grid.
"""
from __future__ import annotations

import math

import torch

from ..core.token_grid import read_grid
from .partitions import grid


def _spec(spec, view_grid) -> tuple[str, int | None]:
    if spec is None or spec == "cells":
        return "cells", None
    if spec == "channels":
        return "channels", None
    kind, sep, num = str(spec).partition(":")
    if kind in ("grid", "cells") and sep and num.isdigit() and 1 <= int(num) <= min(view_grid):
        return "cells", int(num)
    raise ValueError(f"players={spec!r}: at a token layer give 'cells' (one player per patch token), 'channels' or "
                     f"'grid:K' with K in 1..{min(view_grid)} (K x K blocks of the {'x'.join(map(str, view_grid))} "
                     "patch grid)")


def layer_token_players(problem, activation: torch.Tensor, spec=None):
    """``(labels, token_grid info)`` for a token / channels-last layer, or None for channels-first maps."""
    view = read_grid(problem.model, problem.inputs, tuple(activation.shape), problem.layer, problem.layer_name,
                     input_layout=problem.layout)
    if view.layout not in ("tokens", "channels_last"):
        return None
    kind, k = _spec(spec, view.grid)
    n, dev = activation.shape[0], activation.device
    if kind == "channels":
        shape = (1,) * (activation.dim() - 2) + (activation.shape[-1],)
        lab = torch.arange(activation.shape[-1], device=dev).view((1,) + shape)
    else:
        cells = torch.arange(math.prod(view.grid), device=dev).view(view.grid) if k is None else \
            grid(torch.zeros((1, 1) + tuple(view.grid)), k)[0].to(dev)
        if view.layout == "tokens":
            lab = torch.full((activation.shape[1],), -1, dtype=torch.long, device=dev)
            lab[view.prefix:view.prefix + cells.numel()] = cells.flatten()
            lab = lab.view(1, -1, 1)
        else:
            lab = cells.unsqueeze(0).unsqueeze(-1)
    lab = lab.expand((n,) + tuple(lab.shape[1:])).contiguous()
    info = {"layout": view.layout, "prefix": view.prefix, "grid": tuple(view.grid), "how": view.describe()}
    return lab, info


def grid_values(v: torch.Tensor, token_grid: dict) -> torch.Tensor:
    """Values shaped like a token / channels-last layer -> ``[N, C, *grid]`` (prefix tokens dropped)."""
    g = tuple(token_grid["grid"])
    if token_grid["layout"] == "channels_last":
        return v.movedim(-1, 1)
    p = int(token_grid["prefix"])
    return v[:, p:p + math.prod(g)].transpose(1, 2).reshape((v.shape[0], v.shape[-1]) + g)
