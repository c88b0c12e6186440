"""Leave-out methods: feature ablation (each player removed alone: ``phi_i = v(N) - v(N - i)``) and occlusion
(Zeiler & Fergus 2014: a window slides over the input with a stride; each window's drop ``f(x) - f(x with the
window masked)`` is credited to every element under it, and overlaps are averaged — Captum's convention).
"""
from __future__ import annotations

import math

import torch

from ..core.problem import Problem, Result
from ..core.checks import per_dim
from .common import pad
from .game import Game
from .options import GameOptions, game_method
from .incremental import box_sums, plan_occlusion

WINDOW_BLOCK = 4096


@game_method("feature_ablation", options=("players", "masker", "baseline", "all_classes", "spread", "head_only"),
             layer="optional", players=True, baseline=True,
             summary="leave one player out: v(all) - v(all but i)", reference="Zeiler & Fergus 2014; Captum FeatureAblation")
def feature_ablation(problem: Problem, options: GameOptions) -> Result:
    """``phi_i = v(all players) - v(all players but i)`` for every player (``m`` evaluations per sample)."""
    game = Game(problem, options, cache=False)
    n, L, K = game.n, game.max_players, game.n_values
    v_full = game.full()
    zs, rs = [], []
    for i in range(n):
        m = int(game.n_players[i])
        zs.append(pad(~torch.eye(m, dtype=torch.bool), L))
        rs.append(torch.full((m,), i, dtype=torch.long))
    v = game(torch.cat(zs), torch.cat(rs))
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    start = 0
    for i in range(n):
        m = int(game.n_players[i])
        phi[i, :m] = v_full[i] - v[start:start + m]
        start += m
    return game.result({"exact": False}, phi, v_full=v_full)


def windows(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> list[list[tuple[int, int]]]:
    """Window extents per dim: starts ``0, s, 2s, ...`` (``ceil((size - k) / s) + 1`` of them, clipped at the end)."""
    per_dim = []
    for size, k, s in zip(shape, window, stride):
        count = math.ceil((size - k) / s) + 1
        per_dim.append([(j * s, min(size, j * s + k)) for j in range(count)])
    return per_dim


def _geometry(full: tuple, window, stride) -> tuple:
    """``(mshape, window, stride, boxes)`` for a sample of shape ``full`` (see :func:`occlusion`)."""
    spatial = full[1:] if len(full) >= 2 else full
    image = len(full) >= 2
    if window is None:
        window = tuple(max(1, s // 4) for s in spatial) if image else (1,) * len(spatial)
    window = per_dim(window, len(spatial), "window", exact=False)
    if len(window) == len(full) and image:
        mshape = full
    elif len(window) == len(spatial):
        mshape = ((1,) if image else ()) + spatial
        window = ((1,) if image else ()) + window
    else:
        raise ValueError(f"window {window} must give one size per spatial dim {spatial} (or per dim of {full})")
    if stride is None:
        stride = tuple(max(1, k // 2) if m > 1 and image else max(1, k) for k, m in zip(window, mshape))
    else:
        stride = per_dim(stride, len(window), "stride", exact=False)
        if len(stride) == len(window) - 1 and mshape[0] == 1:
            stride = (1,) + stride
    if len(stride) != len(window):
        raise ValueError(f"stride must have one entry per window dim ({len(window)}), got {stride}")
    for k, s, m in zip(window, stride, mshape):
        if k < 1 or s < 1:
            raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
        if k > m:
            raise ValueError(f"window {window} is larger than the input's {mshape} in some dim")
        if s > k and k < m:
            raise ValueError(f"stride {stride} is larger than the window {window}: some elements would never be "
                             "occluded; use stride <= window")
    boxes = [[]]
    for extents in windows(mshape, window, stride):
        boxes = [b + [e] for b in boxes for e in extents]
    return mshape, tuple(window), tuple(stride), boxes


def _keep(block, mshape, n, offset, shape, layout) -> torch.Tensor:
    """Keep-masks of windows ``block`` for every sample: ``[n * w, *mshape]`` (or ``[n * w, width]`` packed)."""
    w = len(block)
    occ = torch.zeros((w,) + mshape, dtype=torch.bool)
    for j, box in enumerate(block):
        occ[(j,) + tuple(slice(a, b) for a, b in box)] = True
    if layout is None:
        return (~occ).unsqueeze(0).expand((n,) + occ.shape).reshape((n * w,) + mshape)
    keep = torch.ones(w, layout.width, dtype=torch.bool)
    keep[:, offset:offset + math.prod(shape)] = ~occ.expand((w,) + shape).reshape(w, -1)
    return keep.unsqueeze(0).expand(n, w, layout.width).reshape(n * w, layout.width)


@game_method("occlusion", options=("masker", "baseline", "all_classes", "head_only", "local"), layer="optional",
             players=False, baseline=True, summary="sliding-window occlusion, overlaps averaged (Zeiler & Fergus 2014)",
             reference="Zeiler & Fergus 2014")
def occlusion(problem: Problem, options: GameOptions, window=None, stride=None) -> Result:
    """Occlude a ``window`` (int or tuple over the spatial dims — all channels at once — or over every
    non-batch dim as in Captum's ``sliding_window_shapes``) every ``stride`` elements.

    Defaults: a quarter of each spatial size with half-window strides for images/series (overlapping windows);
    one feature at a time for tables. ``info["window_values"]``: each window's drop ``[N, windows]``.
    A window over all channels credits its drop to every channel, so ``heatmap()`` takes the channel mean
    (``info["channels"] == "same"``): the map shows each window's drop once, not ``C`` times.
    ``local`` (for occlusion): recompute only each window's receptive-field cone on CNNs
    (:mod:`attrkit.games.incremental`; None decides by cost, False never, True insists); ``info["local_choice"]``
    says which ran and why.
    """
    local = options.local
    game = Game(problem, options.with_(local=None), cache=False)        # (local= is occlusion's own plan here)
    base = game.base
    layout = problem.layout if not game.at_layer else None
    if layout is None:
        segments = [(0, tuple(base.shape[1:])) + _geometry(tuple(base.shape[1:]), window, stride)]
    else:           # several inputs: windows slide over each input in its own shape, one input at a time
        wins = [None] * len(layout) if window is None else layout.as_list(window, "window")
        strides = [None] * len(layout) if stride is None else layout.as_list(stride, "stride")
        segments = [(o, shape) + _geometry(shape, w, st)
                    for o, shape, w, st in zip(layout.offsets, layout.shapes, wins, strides)]
    n, K = game.n, game.n_values
    rows_all = torch.arange(n)
    v_full = game.full()
    dev = base.device
    full = tuple(base.shape[1:])
    if layout is None:
        incremental, choice = plan_occlusion(game, segments[0][2], segments[0][5], local)
    else:
        incremental, choice = None, {"plan": "whole network", "why": "the model takes several inputs"}
        if local:
            raise ValueError("local=True: occlusion cannot be computed incrementally for several inputs; use local=None")
    drops, parts = [], []
    for offset, shape, mshape, window, stride, boxes in segments:
        acc = torch.zeros(n, K, math.prod(mshape), dtype=torch.float64)
        count = torch.zeros(math.prod(mshape), dtype=torch.float64)
        inc = incremental.values().view(n, len(boxes), K) if incremental is not None else None
        for s0 in range(0, len(boxes), WINDOW_BLOCK):
            block = boxes[s0:s0 + WINDOW_BLOCK]
            w = len(block)
            if inc is not None:
                v = inc[:, s0:s0 + w]
            else:
                v = game.evaluate_masks(_keep(block, mshape, n, offset, shape, layout).to(dev),
                                        rows_all.repeat_interleave(w)).view(n, w, K)
            drop = v_full.unsqueeze(1) - v                                # [n, w, K]
            box_acc, box_count = box_sums(drop, block, mshape)
            acc += box_acc
            count += box_count
            drops.append(drop)
        attr = (acc / count.clamp_min(1)).view((n, K) + mshape)
        parts.append(attr.expand((n, K) + shape).reshape(n, K, -1))
    attr = torch.cat(parts, 2)
    col = game.target_column()
    drop = torch.cat(drops, 1)
    windows_, strides_ = [sg[3] for sg in segments], [sg[4] for sg in segments]
    window = windows_[0] if layout is None else tuple(windows_)
    stride = strides_[0] if layout is None else tuple(strides_)
    info = {"window_values": drop[torch.arange(n), :, col], "n_windows": sum(len(sg[5]) for sg in segments),
            "window": tuple(window), "stride": tuple(stride), "exact": False, "local_choice": choice}
    if layout is None and len(full) >= 3 and segments[0][2][0] == 1 and full[0] > 1:
        info["channels"] = "same"     # the window spans all channels: heatmap() shows its drop once, not C times
    return game.result(info, values=attr.view((n, K) + full), v_full=v_full)
