"""Receptive-field cones of occlusion windows (for :mod:`attrkit.games.incremental`).

Which steps of a CNN's local chain (:mod:`attrkit.games.chain`) can be followed window by window (zero-padded
convolutions, max / average pooling, pointwise steps with position-free constants, merges of local values), and
for each window the box of each step's output it can change: an output position of a step with kernel extent
``e = d(k-1) + 1``, stride ``s`` and padding ``p`` reads input positions ``o*s - p`` to ``o*s - p + e - 1``, so
the input box ``[a, b)`` reaches outputs ``ceil((a + p - e + 1) / s)`` to ``floor((b - 1 + p) / s)``; a merge
changes the union (bounding box) of its inputs' boxes. All windows of a plan share one box size per step (the
widest), each shifted inside the map at the borders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .chain import Chain, _attr


@dataclass
class ConeStep:
    """One step of the incremental prefix: ``kind`` "spatial" (conv / pooling on a box read with a halo),
    "point" (elementwise on the box) or "merge" (several inputs read on the union of their boxes)."""
    node: fx.Node
    kind: str
    sources: tuple
    cut: bool
    fn: object = None             # spatial: callable(patch) -> output with padding 0
    kernel: tuple = (1, 1)        # effective extent d*(k-1)+1 per dim
    stride: tuple = (1, 1)
    pads: tuple = ((0, 0), (0, 0))    # (before, after) per dim, ceil-mode overhang included in after
    fill: float = 0.0
    macs: float = 0.0             # multiply-adds per output element (pooling: elements read)
    conv: bool = False


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _spatial(m: nn.Module, in_hw, out_hw):
    """``(fn, kernel extent, stride, pads, fill, macs per output element)`` of a conv / pooling module, or a reason."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return f"{m.padding_mode!r} padding of a convolution"
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if isinstance(m.padding, str):
            tot = [0, 0] if m.padding == "valid" else [d[i] * (k[i] - 1) for i in range(2)]
            pads = tuple((t // 2, t - t // 2) for t in tot)
        else:
            p = _pair(m.padding)
            pads = ((p[0], p[0]), (p[1], p[1]))
        w, b, g = m.weight, m.bias, m.groups
        fn = lambda t: F.conv2d(t, w, b, s, 0, d, g)   # noqa: E731
        fill, macs = 0.0, (m.in_channels // g) * k[0] * k[1]
    elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        p = _pair(m.padding)
        pads = ((p[0], p[0]), (p[1], p[1]))
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                return "a max pooling that returns indices"
            fn, fill = (lambda t: F.max_pool2d(t, k, s, 0, d)), -math.inf
        else:
            if any(p) and not m.count_include_pad:
                return "an average pooling that leaves its padding out of the count"
            fn, fill = (lambda t: F.avg_pool2d(t, k, s, 0, False, True, m.divisor_override)), 0.0
        macs = k[0] * k[1]
    else:
        return f"{type(m).__name__} is not followed window by window"
    ext = tuple(d[i] * (k[i] - 1) + 1 for i in range(2))
    over = [max(0, (out_hw[i] - 1) * s[i] + ext[i] - (in_hw[i] + pads[i][0] + pads[i][1])) for i in range(2)]
    if any(over) and not isinstance(m, nn.MaxPool2d):
        return f"a ceil-mode {type(m).__name__} whose last window overhangs the map"
    pads = tuple((pads[i][0], pads[i][1] + over[i]) for i in range(2))
    return fn, ext, s, pads, fill, float(macs)


def _position_free(gm, node) -> bool:
    """The node's model constants broadcast over channels only (a spatial constant cannot be cut to a box)."""
    for a in node.all_input_nodes:
        if a.op == "get_attr":
            t = _attr(gm, a.target)
            if isinstance(t, torch.Tensor) and t.numel() > 1 and (t.dim() < 3 or t.shape[-1] > 1 or t.shape[-2] > 1):
                return False
    return True


def followed_steps(chain: Chain, shapes: dict) -> tuple[list[ConeStep], str]:
    """The longest prefix of the chain that can be followed window by window, and why it stops ("" at the end)."""
    ops = []
    for st in chain.steps:
        n = st.node
        if len(shapes[n]) != 3:
            return ops, f"{n.name} is not a [C, H, W] map"
        if st.module is not None:
            got = _spatial(st.module, shapes[st.sources[0]][1:], shapes[n][1:])
            if isinstance(got, str):
                return ops, f"{got} ({n.target})"
            fn, ext, s, pads, fill, macs = got
            ops.append(ConeStep(n, "spatial", st.sources, st.cut, fn, ext, s, pads, fill, macs,
                           isinstance(st.module, nn.Conv2d)))
        elif not _position_free(chain.gm, n):
            return ops, f"{n.name} adds a constant that varies over positions"
        else:
            ops.append(ConeStep(n, "point" if len(st.sources) == 1 else "merge", st.sources, st.cut))
    return ops, ""


def _box(lo, hi, size):
    """One region length for all windows (the widest box) and each window's start, shifted inside the map."""
    length = int(min(size, max(1, int((hi - lo).max()))))
    return np.clip(lo, 0, size - length), length


def window_boxes(ops, shapes, boxes, inp) -> dict:
    """Per node: ``(exact lo [Wn, 2], exact hi [Wn, 2], region start [Wn, 2], region size (2,))``."""
    lo = np.array([[b[1][0], b[2][0]] for b in boxes])
    hi = np.array([[b[1][1], b[2][1]] for b in boxes])
    geo = {}

    def region(lo, hi, hw):
        st = np.zeros_like(lo)
        size = [0, 0]
        for i in range(2):
            st[:, i], size[i] = _box(lo[:, i], hi[:, i], hw[i])
        return lo, hi, st, tuple(size)

    geo[inp] = region(lo, hi, shapes[inp][1:])
    for op in ops:
        hw = shapes[op.node][1:]
        if op.kind == "spatial":
            slo, shi = geo[op.sources[0]][:2]
            nlo, nhi = np.zeros_like(slo), np.zeros_like(shi)
            for i in range(2):
                p, s, e = op.pads[i][0], op.stride[i], op.kernel[i]
                a = np.clip(-((-(slo[:, i] + p - (e - 1))) // s), 0, hw[i] - 1)       # ceil division
                b = np.minimum(hw[i], (shi[:, i] - 1 + p) // s + 1)
                nlo[:, i], nhi[:, i] = a, np.maximum(b, a + 1)
        else:
            nlo = np.min([geo[s][0] for s in op.sources], 0)
            nhi = np.max([geo[s][1] for s in op.sources], 0)
        geo[op.node] = region(nlo, nhi, hw)
    return geo
