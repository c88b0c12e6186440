"""Incremental occlusion: per window, recompute only the part of each layer the window can reach (Krypton;
Nakandala, Kumar & Papakonstantinou, SIGMOD 2019).

An occluded window changes the input only inside its box. Along the local prefix of a CNN
(:mod:`attrkit.games.chain`: convolutions, pooling, pointwise functions, residual merges) the changed positions
of each layer form a box that grows layer by layer (the window's receptive-field *cone*): an output position of
a convolution with kernel ``k``, stride ``s``, dilation ``d`` and padding ``p`` reads input positions
``o*s - p + d*j`` (``j < k``), so the box ``[a, b)`` reaches outputs ``ceil((a + p - d(k-1)) / s)`` to
``floor((b - 1 + p) / s)``. The unchanged image runs once (every layer's activation is kept); per window, each
layer computes only its box (all windows of a call share one box size, shifted inside the map at the borders),
reading the previous layer's box where it was recomputed and the cached activation elsewhere. At a *switch*
layer the box is pasted into the cached activation and the rest of the network runs whole. The switch is chosen
by a cost model in multiply-adds (each step's box, the gathers, the paste and the head), against the whole
network per window; ``info["local_choice"]`` says which ran and why. A few windows are checked against the whole
network before the values are used (else the whole network runs). Values equal the whole network's to float
rounding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .chain import local_chain, run_node, run_prefix
from .cones import window_boxes, followed_steps
from ..core.split import head_after

ASSEMBLE_COST = 12       # multiply-add equivalents per element gathered into a step's input box (measured, 2 CPU cores)
PASTE_COST = 4           # ... per element of the switch layer's full activation (clone + scatter)
ELEM_COST = 4            # ... per element of a pointwise step, per element read by a pooling (memory-bound work)
MIN_SAVING = 0.2         # use the incremental plan only when it saves this fraction of the whole network's work
STEP_COST = 3e4          # ... per step and window: calls, index arithmetic (small boxes are not free)
CHECK_WINDOWS = 3        # windows checked against the whole network before the values are used
PLAN_ROWS = 8            # whole-network rows' worth of planning: the count, the cached run, the check (both ways)
MIN_ROWS = 48            # fewer windows (all samples) than this run the whole network without planning
TARGET_BYTES = 96 << 20  # working memory of one call (boxes of every step for its windows)


def _per_elem(op) -> float:
    """Multiply-add equivalents per output element of a step (convolutions: their multiply-adds)."""
    return op.macs if op.conv else ELEM_COST * (op.macs if op.kind == "spatial" else 1.0)


def _hwc(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H, W, C]`` contiguous (a view when ``t`` is channels-last)."""
    return t.permute(0, 2, 3, 1).contiguous()


def _chw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


class IncrementalOcclusion:
    """Window values of one occlusion call, computed incrementally (see the module doc)."""

    def __init__(self, game, chain, ops, switch, geo, shapes, boxes, occ, chunk):
        self.game, self.chain, self.ops, self.switch = game, chain, ops[:switch + 1], switch
        self.head = head_after(chain.gm, ops[switch].node)
        self.shapes, self.chunk = shapes, chunk
        dev = game.base.device
        self.geo = {n: (torch.as_tensor(g[2], device=dev), g[3]) for n, g in geo.items()}
        self.in_lo = torch.as_tensor(geo[chain.input][0], device=dev)
        self.in_hi = torch.as_tensor(geo[chain.input][1], device=dev)
        self.chan = torch.as_tensor([[b[0][0], b[0][1]] for b in boxes], device=dev)
        self.per_channel = occ
        self.windows = len(boxes)
        self._cached = (None, None)

    # ------------------------------------------------------------------ per sample
    def _base(self, row: int) -> dict:
        """Every kept value of the unchanged sample, ``[H, W, C]`` each (computed once per sample)."""
        if self._cached[0] == row:
            return self._cached[1]
        keep = set(s for op in self.ops for s in op.sources) | {self.ops[-1].node}
        vals = {}
        steps = self.chain.steps
        x = self.game.base[row:row + 1]
        with torch.inference_mode():
            run_prefix(self.chain, x, self.switch, lambda k, a: vals.__setitem__(steps[k].node, a))
        vals[self.chain.input] = x
        base = {n: _hwc(v)[0] for n, v in vals.items() if n in keep}
        refs = self.game.references
        base["ref"] = _hwc(refs[row if refs.shape[0] > 1 else 0, :1].expand_as(x))[0]
        self._cached = (row, base)
        return base

    def _assemble(self, base, env, src, idx, start, size, pads=((0, 0), (0, 0)), fill=0.0) -> torch.Tensor:
        """``[B, size_h, size_w, C]``: ``src``'s values on boxes starting at ``start`` (coordinates of the map
        padded by ``pads`` with ``fill``): the recomputed box of ``src`` where it lies, the cached map elsewhere."""
        key = (src, pads, fill)
        if key not in base:       # the cached map, padded once per sample and consumer
            full = base[src]
            if any(p for pp in pads for p in pp):
                full = F.pad(full.permute(2, 0, 1), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]),
                             value=fill).permute(1, 2, 0).contiguous()
            base[key] = full
        full = base[key]
        hp, wp, c = full.shape
        dev = full.device
        ys = start[:, :1] + torch.arange(size[0], device=dev)                   # [B, h]
        xs = start[:, 1:] + torch.arange(size[1], device=dev)                   # [B, w]
        out = full.view(-1, c).index_select(0, (ys[:, :, None] * wp + xs[:, None, :]).view(-1))
        box = env[src]
        sst, ssz = self.geo[src]
        sst = sst[idx]
        iy = ys - (sst[:, :1] + pads[0][0])
        ix = xs - (sst[:, 1:] + pads[1][0])
        inside = (((iy >= 0) & (iy < ssz[0]))[:, :, None] & ((ix >= 0) & (ix < ssz[1]))[:, None, :]).view(-1)
        b = torch.arange(box.shape[0], device=dev)[:, None, None]
        flat = ((b * ssz[0] + iy[:, :, None]) * ssz[1] + ix[:, None, :]).view(-1)
        dst = inside.nonzero().flatten()
        out.index_copy_(0, dst, box.reshape(-1, c).index_select(0, flat[dst]))
        return out.view(len(idx), size[0], size[1], c)

    def _input(self, base, idx) -> torch.Tensor:
        """The occluded input on the input node's boxes ``[B, h, w, C]``."""
        st, size = self.geo[self.chain.input]
        st = st[idx]
        dev = st.device
        ys = st[:, :1] + torch.arange(size[0], device=dev)
        xs = st[:, 1:] + torch.arange(size[1], device=dev)
        x = base[self.chain.input][ys[:, :, None], xs[:, None, :]]
        ref = base["ref"][ys[:, :, None], xs[:, None, :]]
        lo, hi = self.in_lo[idx], self.in_hi[idx]
        occ = ((ys >= lo[:, :1]) & (ys < hi[:, :1]))[:, :, None] & ((xs >= lo[:, 1:]) & (xs < hi[:, 1:]))[:, None, :]
        occ = occ[..., None]
        if self.per_channel:
            c = torch.arange(x.shape[-1], device=dev)
            ch = self.chan[idx]
            occ = occ & ((c >= ch[:, :1]) & (c < ch[:, 1:]))[:, None, None, :]
        return torch.where(occ, ref, x)

    def run(self, row: int, idx: torch.Tensor) -> torch.Tensor:
        """Model outputs for windows ``idx`` of sample ``row``."""
        base = self._base(row)
        gm = self.chain.gm
        env = {self.chain.input: self._input(base, idx)}
        for op in self.ops:
            st, size = self.geo[op.node]
            st = st[idx]
            if op.kind == "spatial":
                need = tuple((size[i] - 1) * op.stride[i] + op.kernel[i] for i in range(2))
                start = st * torch.as_tensor(op.stride, device=st.device)
                patch = self._assemble(base, env, op.sources[0], idx, start, need, op.pads, op.fill)
                out = op.fn(_chw(patch))
            else:
                if op.kind == "point":
                    vals = {op.sources[0]: _chw(env[op.sources[0]])}
                else:
                    vals = {s: _chw(self._assemble(base, env, s, idx, st, size)) for s in op.sources}
                out = run_node(gm, op.node, vals)
            env[op.node] = _hwc(out)
        last = self.ops[-1].node
        st, size = self.geo[last]
        st = st[idx]
        full = base[last]
        h, w, c = full.shape
        b = len(idx)
        dev = full.device
        pos = ((st[:, :1] + torch.arange(size[0], device=dev))[:, :, None] * w
               + (st[:, 1:] + torch.arange(size[1], device=dev))[:, None, :]).reshape(b, -1, 1)
        act = full.reshape(1, h * w, c).repeat(b, 1, 1)
        act.scatter_(1, pos.expand(-1, -1, c), env[last].reshape(b, -1, c))
        return self.head(_chw(act.view(b, h, w, c)))

    def values(self) -> torch.Tensor:
        """``[N * windows, K]`` window values, sample-major (the order of ``Game.evaluate_masks``)."""
        game, w = self.game, self.windows
        total = game.n * w
        dev = game.base.device
        rows = torch.arange(game.n, device=dev).repeat_interleave(w)
        win = torch.arange(w, device=dev).repeat(game.n)

        def forward(s, e):
            outs = []
            for r in rows[s:e].unique_consecutive().tolist():
                sel = (rows[s:e] == r).nonzero().flatten() + s
                outs.append(self.run(r, win[sel]))
            return torch.cat(outs), rows[s:e]

        return game._loop(forward, total, self.chunk)


def box_sums(values: torch.Tensor, boxes: list, shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_w values[:, w] * 1[box_w], sum_w 1[box_w])`` as ``[N, K, prod(shape)]`` and ``[prod(shape)]`` float64
    for ``values`` ``[N, W, K]`` and boxes (extents per dim of ``shape``), by difference arrays: ``+-v`` at the
    ``2^d`` corners of each box, then a cumulative sum along every dim (no ``[W, prod(shape)]`` mask)."""
    n, w, k = values.shape
    d = len(shape)
    ext = tuple(m + 1 for m in shape)
    lo = torch.tensor([[a for a, _ in b] for b in boxes], dtype=torch.long).view(w, d)
    hi = torch.tensor([[e for _, e in b] for b in boxes], dtype=torch.long).view(w, d)
    strides = torch.tensor([math.prod(ext[i + 1:]) for i in range(d)], dtype=torch.long)
    vals = torch.cat([values.detach().cpu().to(torch.float64).permute(1, 0, 2).reshape(w, n * k),
                      torch.ones(w, 1, dtype=torch.float64)], 1)
    diff = torch.zeros(math.prod(ext), n * k + 1, dtype=torch.float64)
    for corner in range(1 << d):
        up = torch.tensor([(corner >> i) & 1 for i in range(d)], dtype=torch.bool)
        flat = (torch.where(up, hi, lo) * strides).sum(1)
        diff.index_add_(0, flat, vals if bin(corner).count("1") % 2 == 0 else -vals)
    diff = diff.view(ext + (n * k + 1,))
    for i in range(d):
        diff = diff.cumsum(i)
    out = diff[tuple(slice(0, m) for m in shape)].reshape(-1, n * k + 1)
    return out[:, :-1].T.reshape(n, k, -1).contiguous(), out[:, -1].contiguous()


def _whole_macs(problem, x) -> float:
    """Multiply-adds of the whole network for one row (``torch.utils.flop_counter``), NaN if they cannot be counted."""
    from torch.utils.flop_counter import FlopCounterMode
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            problem.forward(x)
        return counter.get_total_flops() / 2.0
    except Exception as e:
        try:
            with torch.inference_mode():
                problem.forward(x)
        except Exception:   # noqa: BLE001 - the model itself fails: its own (first) error goes to the user
            raise e from None
        return float("nan")    # a model the counter cannot follow: no comparison


def plan_occlusion(game, mshape: tuple, boxes: list, local: bool | None):
    """``(IncrementalOcclusion or None, choice)`` for occlusion windows ``boxes`` (extents per dim of ``mshape``,
    ``(1, H, W)`` or ``(C, H, W)``) of an input-level image game; ``choice`` is ``info["local_choice"]``.
    ``local``: None decides by cost, False never, True insists (ValueError when it cannot be incremental)."""
    if local is False:
        return None, {"plan": "whole network", "why": "local=False was asked for"}
    found = _why_not(game) or (local is None and game.n * len(boxes) < MIN_ROWS and
                               f"{game.n * len(boxes)} windows (fewer than {MIN_ROWS}) do not pay for a plan") \
        or _search(game, mshape, boxes, local is True)
    plan, rec = (None, {"plan": "whole network", "why": found}) if isinstance(found, str) else found
    if plan is None and local:
        raise ValueError(f"local=True: occlusion cannot be computed incrementally here: {rec['why']}; "
                         "use local=None")
    return plan, rec


def _why_not(game) -> str:
    if game.at_layer:
        return "it is a layer game (the head after the layer runs as it is)"
    if game.problem.layout is not None:
        return "the model takes several inputs"
    if game.base.dim() != 4 or not game.base.is_floating_point():
        return f"the inputs are not float images [N, C, H, W] (shape {tuple(game.base.shape)})"
    if game.reps != 1:
        return "the masker averages over several references per window"
    return ""


def _search(game, mshape, boxes, force):
    """Pick the switch step by cost; check the plan on a few windows. Returns (plan, choice) or a reason."""
    chain = local_chain(game.problem.model)
    if chain is None:
        return ("the model has no traceable chain of convolutions, pointwise functions and pooling from its input "
                "(torch.fx)")
    x = game.base[:1]
    shapes = {chain.input: tuple(x.shape[1:])}
    with torch.inference_mode(), game._model_mode():
        run_prefix(chain, x, len(chain.steps) - 1,
                   lambda k, a: shapes.__setitem__(chain.steps[k].node, tuple(a.shape[1:])))
        whole = _whole_macs(game.problem, x)
    ops, stop = followed_steps(chain, shapes)
    if whole != whole:
        return "the whole network's multiply-adds could not be counted, so no plan can be shown cheaper"
    geo = window_boxes(ops, shapes, boxes, chain.input)
    point = sum(math.prod(shapes[op.node]) * _per_elem(op) for op in ops if not op.conv)
    whole_row = whole + point             # the counter misses pointwise and pooling work; the prefix counts it
    best, prefix, inc, per_win = None, 0.0, 0.0, 0.0
    for k, op in enumerate(ops):
        c, hh, ww = shapes[op.node]
        size = geo[op.node][3]
        prefix += math.prod(shapes[op.node]) * _per_elem(op)
        inc += size[0] * size[1] * c * _per_elem(op) + STEP_COST
        if op.kind != "point":
            for s in op.sources:
                need = size if op.kind == "merge" else \
                    tuple((size[i] - 1) * op.stride[i] + op.kernel[i] for i in range(2))
                inc += ASSEMBLE_COST * need[0] * need[1] * shapes[s][0]
                per_win = max(per_win, need[0] * need[1] * shapes[s][0])
        if not op.cut:
            continue
        est = inc + PASTE_COST * c * hh * ww + (whole_row - prefix)
        if best is None or est < best[1]:
            best = (k, est, per_win)
    if best is None:
        return f"no step of the local chain can be followed window by window ({stop or 'none is a cut'})"
    k, est, per_win = best
    name = _name(ops[k].node)
    rows = game.n * len(boxes)
    rec = {"plan": "whole network", "windows": len(boxes), "whole_macs": whole_row, "estimated_macs": est}
    if rows * est + PLAN_ROWS * whole_row > (1 - MIN_SAVING) * rows * whole_row and not force:
        rec["why"] = (f"the cheapest switch (after {name}) would cost an estimated {est / whole_row:.0%} of the whole "
                      f"network per window, plus {PLAN_ROWS} rows to plan and check it; incremental occlusion must "
                      f"save at least {MIN_SAVING:.0%}")
        return None, rec
    c, hh, ww = shapes[ops[k].node]
    per_row = 4 * (8 * per_win + 4 * c * hh * ww)
    problem = game.problem
    budget = TARGET_BYTES if problem.max_memory is None else min(TARGET_BYTES, int(problem.max_memory))
    chunk = game.chunk if problem.batch_size is not None else max(game.chunk, budget // per_row)   # windows per call
    chunk = int(max(1, min(len(boxes), chunk)))
    plan = IncrementalOcclusion(game, chain, ops, k, geo, shapes, boxes, mshape[0] > 1, chunk)
    check = _check(game, plan, mshape, boxes)
    if check:
        rec["why"] = check
        return None, rec
    rec.update(plan=f"incremental: window cones recomputed up to {name}, then the rest whole", switch=name,
               chunk=chunk, why=f"estimated {est / whole_row:.0%} of the whole network's multiply-adds per window")
    return plan, rec


def _check(game, plan, mshape, boxes) -> str:
    """"" when the plan reproduces the whole network on a few windows of the first sample, else why not."""
    pick = sorted({0, len(boxes) // 2, len(boxes) - 1})[:CHECK_WINDOWS]
    occ = torch.zeros((len(pick),) + tuple(mshape), dtype=torch.bool)
    for j, i in enumerate(pick):
        occ[(j,) + tuple(slice(a, b) for a, b in boxes[i])] = True
    dev = game.base.device
    x = game.base[:1]
    ref = game.references[0, 0]
    with torch.inference_mode(), game._model_mode():
        try:
            got = plan.run(0, torch.tensor(pick, device=dev))
        except Exception as e:    # noqa: BLE001 - a head that cannot run alone: the whole network runs
            return f"the network after the switch could not run alone ({type(e).__name__}: {e})"
        want = game.problem.forward(torch.where(~occ.to(dev), x, ref))
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return "the network after the switch returns another output than the model"
    scale = max(1.0, float(want.abs().max()))
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
        return "the incremental plan did not reproduce the whole network on its check windows"
    return ""


def _name(node) -> str:
    return str(node.target) if node.op == "call_module" else node.name
