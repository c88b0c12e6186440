"""Receptive-field evaluation of image games: the network's local prefix runs once per *local pattern*.

A coalition changes the input only on its players' pixels, and the first layers of a CNN are local: after a
chain of convolutions, pointwise functions and pooling, the activation at position ``q`` depends only on the
input pixels in ``q``'s receptive field, hence only on the players ``P(q)`` touching it. Over all coalitions,
position ``q`` takes at most ``2^|P(q)|`` distinct values (12 superpixels of a 64x64 image: 4,096 coalitions,
but at most 2-32 patterns per position after four 3x3 convolutions and two poolings).

The plan (built per sample when enough coalitions are asked for) picks a cut after some node of the local
prefix (:mod:`attrkit.games.chain`: through residual additions, shortcuts and concatenations),
builds a small *family* of coalitions that shows every position every pattern of its own players (a covering
array, built greedily), runs the prefix on the family only, and assembles the cut activation of any coalition
by gathering, per position, the family row with the same pattern; only the rest of the network (the head)
runs per coalition. The result is what the full network computes, to float rounding. The cut is chosen by a
cost model in multiply-adds: the plan (prefix on the family, the agreement check, per coalition the gather and
the head) against the plain whole network per coalition (its multiply-adds counted once by torch's
``FlopCounterMode``); a plan that does not save ``MIN_WHOLE_SAVING`` of the whole is not used, and
``info["local_choice"]`` says which was chosen and why. Incremental inference for occlusion
(Krypton; Nakandala, Kumar & Papakonstantinou, SIGMOD 2019) rests on the same locality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..core.budget import DEFAULT_MAX_MEMORY
from .chain import Chain, local_chain, run_prefix  # noqa: F401 (local_chain: public here)
from .covering import covering_family
from ..core.split import head_after

MAX_LOCAL_PLAYERS = 14     # a position touching more players than this stops the search (2^14 patterns)
GATHER_COST = 64           # multiply-add equivalents per gathered activation element (memory traffic; measured
                           # on 2 CPU cores: a cut after the first 3x3 convolution never pays)
MIN_SAVING = 0.5           # use a plan only when it saves half of the prefix's work ...
MIN_SAVED_MACS = 2e8       # ... and at least this many multiply-adds (building a plan costs ~10-50 ms)
MIN_WHOLE_SAVING = 0.1     # ... and this fraction of the whole network's multiply-adds: counts miss per-call and
                           # memory costs of the head on gathered activations (issue 19: a ResNet-18 stem cut,
                           # ~6 % fewer multiply-adds, ran 1.6x slower than the whole network)
AGREE_ROWS = 4             # family rows the plan is checked on against the whole network
HEAD_ROWS = 1024           # coalitions per call of a head without convolutions

# ------------------------------------------------------------------------------------ receptive fields
def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _spread(dep: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """Which players reach each output position of ``m``: ``dep`` ``[L, H, W]`` (0/1 float) -> ``[L, H', W']``."""
    if m is None:
        return dep
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return F.adaptive_max_pool2d(dep[None], m.output_size)[0]
    if isinstance(m, nn.Conv2d):
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if isinstance(m.padding, str):
            pads = [(0, 0), (0, 0)] if m.padding == "valid" else \
                [(d[i] * (k[i] - 1) // 2, d[i] * (k[i] - 1) - d[i] * (k[i] - 1) // 2) for i in range(2)]
        else:
            p = _pair(m.padding)
            pads = [(p[0], p[0]), (p[1], p[1])]
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        ceil = False
    else:
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        p = _pair(m.padding)
        pads, mode, ceil = [(p[0], p[0]), (p[1], p[1])], "constant", bool(m.ceil_mode)
    flat = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    if any(flat):
        dep = F.pad(dep[None], flat, mode=mode, **({"value": 0.0} if mode == "constant" else {}))[0]
    return F.max_pool2d(dep[None], k, s, 0, d, ceil_mode=ceil)[0]


def _cost(m, out_shape) -> float:
    """Multiply-adds of one step per row (pointwise / pooling: one per output element)."""
    elems = float(np.prod(out_shape))
    if isinstance(m, nn.Conv2d):
        kh, kw = _pair(m.kernel_size)
        return elems * (m.in_channels // m.groups) * kh * kw
    return elems


# ------------------------------------------------------------------------------------ the plan
@dataclass
class LocalPlan:
    """One sample's plan: ``run(z)`` -> model outputs for coalitions ``z`` ``[b, L]`` (bool)."""
    cut: str
    family: int                   # rows of the covering family the prefix ran on
    chunk: int                    # coalitions per head call
    head: nn.Module
    table: torch.Tensor           # [Q * m, C]: family activations, position-major
    set_of: torch.Tensor          # [Q] set index of each cut position
    weights: torch.Tensor         # [L, T] float64: 2^(rank of player in set t) if the player is in it
    offsets: torch.Tensor         # [T] start of each set's patterns in ``lut``
    lut: torch.Tensor             # [sum 2^|S_t|] family row showing each pattern
    shape: tuple                  # (C, H', W') of the cut activation

    def run(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        q = h * w
        m = self.table.shape[0] // q
        codes = (z[:, :self.weights.shape[0]].to(self.weights.dtype) @ self.weights).long()     # [b, T]
        rows = self.lut[codes[:, self.set_of] + self.offsets[self.set_of]]                      # [b, Q]
        idx = rows + torch.arange(q, device=rows.device) * m
        act = self.table.index_select(0, idx.reshape(-1)).view(z.shape[0], h, w, c).permute(0, 3, 1, 2)
        return self.head(act)


class LocalPlanner:
    """Builds :class:`LocalPlan` s for the samples of one input-level image game (see the module doc)."""

    def __init__(self, problem, base: torch.Tensor, players, references: torch.Tensor, chunk: int):
        self.problem = problem
        self.chain = local_chain(problem.model) if base.dim() == 4 else None
        self.base, self.players, self.refs, self.chunk = base, players, references, int(chunk)
        self.budget = DEFAULT_MAX_MEMORY if problem.max_memory is None else int(problem.max_memory)
        self.plans: dict[int, LocalPlan | None] = {}
        self.built: list[tuple[str, int]] = []          # (cut, family rows) of every plan built, for info
        self._tried: dict[int, int] = {}
        self.choices: dict[int, dict] = {}              # per sample: the plan chosen (or "whole network") and why
        self._whole: float | None = None

    @property
    def why_not(self) -> str:
        """Why no plan can be built for this game ("" when one can)."""
        if self.base.dim() != 4:
            return f"the inputs are not images [N, C, H, W] (shape {tuple(self.base.shape)})"
        if self.chain is None:
            return ("the model has no traceable chain of convolutions, pointwise functions and pooling from its "
                    "input (torch.fx)")
        if self.refs.shape[1] != 1:
            return "the masker averages over several references per coalition"
        return ""

    def plan(self, row: int, n_coalitions: int, force: bool = False) -> LocalPlan | None:
        """The sample's plan, built on first use when ``n_coalitions`` make it pay (``force``: whenever the
        model allows one), or None."""
        known = self.plans.get(row)
        if known is not None or (row in self.plans and n_coalitions <= self._tried[row] and not force):
            return known
        plan = self._build(row, n_coalitions, force)
        if plan is not None:
            self.built.append((plan.cut, plan.family))
            self._evict(plan.table.numel() * plan.table.element_size())
        self.plans[row] = plan
        self._tried[row] = max(n_coalitions, self._tried.get(row, 0))
        return plan

    def _evict(self, adding: int) -> None:
        """Forget the oldest plans while the tables kept would exceed a quarter of the memory budget (a
        forgotten plan is rebuilt if its sample comes back)."""
        kept = [r for r, p in self.plans.items() if p is not None]
        total = adding + sum(self.plans[r].table.numel() * self.plans[r].table.element_size() for r in kept)
        for r in kept:
            if total <= self.budget // 4:
                break
            total -= self.plans[r].table.numel() * self.plans[r].table.element_size()
            del self.plans[r]
            self._tried.pop(r, None)

    def _incidence(self, row: int) -> tuple[torch.Tensor, int]:
        """``[players, H, W]``: 1 where a player owns the pixel (in any channel)."""
        lab = self.players.labels[row].cpu()                   # [C|1, H, W]
        npl = int(self.players.n[row])
        flat = lab.reshape(lab.shape[0], -1)
        dep = torch.zeros(npl, flat.shape[1])
        pos = torch.arange(flat.shape[1])
        for c in range(flat.shape[0]):
            dep[flat[c], pos] = 1.0
        return dep.view(npl, lab.shape[-2], lab.shape[-1]), npl

    def whole_macs(self, row: int) -> float:
        """Multiply-adds of the whole network for one row (convolutions and matrix products, counted once per
        game by ``torch.utils.flop_counter``); NaN when they cannot be counted."""
        if self._whole is None:
            try:
                from torch.utils.flop_counter import FlopCounterMode
                with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                    self.problem.forward(self.base[row:row + 1])
                self._whole = counter.get_total_flops() / 2.0
            except Exception:      # a model the counter cannot follow: no comparison, no plan (unless forced)
                self._whole = float("nan")
        return self._whole

    def _build(self, row: int, n: int, force: bool = False) -> LocalPlan | None:
        """Pick the cut with the lowest estimated cost for ``n`` coalitions; use it only when it beats the
        whole network by ``MIN_WHOLE_SAVING`` (see the module doc). Records the choice in ``choices``."""
        dep0, npl = self._incidence(row)
        steps = self.chain.steps
        shapes, costs = [], []          # along the prefix, from one run of it on the sample itself
        with torch.inference_mode():
            run_prefix(self.chain, self.base[row:row + 1], len(steps) - 1,
                       lambda k, a: (shapes.append(tuple(a.shape[1:])), costs.append(_cost(steps[k].module, a.shape[1:]))))
        counted = self.whole_macs(row)
        if counted != counted:
            if not force:
                self._choose(row, n, None, None, None, None, "")
                return None
            counted = sum(c for c, st in zip(costs, steps) if isinstance(st.module, nn.Conv2d))   # forced: ranks
        # one whole row in the chain's units: counted products plus the chain's pointwise work (not counted)
        whole_row = counted + sum(c for c, st in zip(costs, steps) if not isinstance(st.module, nn.Conv2d))
        whole = n * whole_row
        best, best_est, cheapest = None, float("inf") if force else 0.0, None
        stop = ""
        prefix = 0.0
        deps = {self.chain.input: dep0}                 # players reaching each position of each prefix value
        for k, st in enumerate(steps):
            srcs = [deps[s] for s in st.sources]
            if any(d.shape[1:] != srcs[0].shape[1:] for d in srcs):
                break                                       # a merge of different sizes: not followed
            dep = _spread(srcs[0], st.module) if len(srcs) == 1 else torch.stack(srcs).amax(0)
            deps[st.node] = dep
            prefix += costs[k]
            if len(shapes[k]) != 3 or tuple(dep.shape[1:]) != shapes[k][1:]:
                break
            if not st.cut or (k + 1 < len(steps) and not isinstance(steps[k + 1].module, nn.Conv2d)):
                continue            # cut only where nothing later reads earlier values, before a convolution
            sets = _sets(dep)
            widest = max(len(s) for s in sets[0])
            if widest > MAX_LOCAL_PLAYERS or ((1 << widest) >= n and not force):
                stop = (f"after {_name(st.node)} a position sees {widest} players: {1 << widest} patterns, "
                        f"not fewer than the {n} coalitions" if widest <= MAX_LOCAL_PLAYERS else
                        f"after {_name(st.node)} a position sees {widest} players (more than {MAX_LOCAL_PLAYERS})")
                break                                       # deeper cuts only see more players per position
            elems = float(np.prod(shapes[k]))

            def cost(m):        # the plan's multiply-adds with a family of m rows, all coalitions included
                head = whole_row - prefix
                return m * prefix + AGREE_ROWS * (whole_row + head) + n * (GATHER_COST * elems + head)

            def pays(m):        # saving over the whole network, if it beats the best so far and is worth it
                est = cost(m) - whole
                ok = est < best_est and (force or -est >= max(MIN_SAVING * n * prefix, MIN_SAVED_MACS,
                                                              MIN_WHOLE_SAVING * whole))
                return est if ok else None

            if pays(1 << widest) is None:
                if cheapest is None or cost(1 << widest) < cheapest[1]:
                    cheapest = (_name(st.node), cost(1 << widest))
                continue                                    # not even the smallest conceivable family would pay
            fam = covering_family(sets[0], npl)
            if fam.shape[0] * elems * 4 > self.budget // 4:
                continue                                    # its table would not fit; a deeper cut may
            est = pays(fam.shape[0])
            if cheapest is None or cost(fam.shape[0]) < cheapest[1]:
                cheapest = (_name(st.node), cost(fam.shape[0]))
            if est is not None:
                best, best_est = (k, fam, sets), est
        plan = None if best is None else self._make(row, npl, *best)
        self._choose(row, n, plan, best_est + whole if best is not None else None, whole, cheapest, stop)
        return plan

    def _choose(self, row, n, plan, est, whole, cheapest, stop) -> None:
        """Record, for ``info["local_choice"]``, what ran and why (multiply-add estimates for ``n`` coalitions)."""
        rec = {"plan": "whole network", "coalitions": n, "whole_macs": whole}
        if plan is not None:
            rec.update(plan=f"receptive-field plan cut after {plan.cut}", estimated_macs=est,
                       why=f"estimated {est / whole:.0%} of the whole network's multiply-adds")
        elif est is not None:
            rec["why"] = "the plan did not reproduce the whole network on its check rows"
        elif whole is None:
            rec["why"] = "the whole network's multiply-adds could not be counted, so no plan can be shown cheaper"
        elif cheapest is not None:
            rec.update(estimated_macs=cheapest[1],
                       why=f"the cheapest cut (after {cheapest[0]}) would cost at least an estimated "
                           f"{cheapest[1] / whole:.0%} "
                           f"of the whole network's multiply-adds; a plan must save at least {MIN_WHOLE_SAVING:.0%} "
                           f"of them, half of its prefix's and {MIN_SAVED_MACS:.0e}")
        else:
            rec["why"] = (stop or "no cut of the local chain fits the memory budget") + "; no cut pays"
        self.choices[row] = rec

    def _make(self, row, npl, k, fam, sets) -> LocalPlan | None:
        set_list, set_of = sets
        gm, steps = self.chain.gm, self.chain.steps
        cut = steps[k].node
        head = head_after(gm, cut)
        z = torch.from_numpy(fam).to(self.base.device)
        x = self.base[row:row + 1]
        ref = self.refs[row if self.refs.shape[0] > 1 else 0, 0]
        rows = torch.full((z.shape[0],), row, dtype=torch.long, device=self.base.device)
        keep = self.players.masks(z, rows)
        outs = []
        with torch.inference_mode():
            for s in range(0, z.shape[0], self.chunk):
                a = torch.where(keep[s:s + self.chunk], x, ref).contiguous(memory_format=torch.channels_last)
                outs.append(run_prefix(self.chain, a, k))
            act = torch.cat(outs)                                                  # [m, C, H', W']
        m, c, h, w = act.shape
        table = act.permute(2, 3, 0, 1).reshape(h * w * m, c).contiguous()
        sizes = [len(s) for s in set_list]
        offsets = torch.tensor(np.concatenate([[0], np.cumsum([1 << s for s in sizes])[:-1]]), dtype=torch.long)
        weights = torch.zeros(npl, len(set_list), dtype=torch.float64)
        for t, s in enumerate(set_list):
            for r, p in enumerate(s):
                weights[p, t] = float(1 << r)
        lut = torch.full((int(sum(1 << s for s in sizes)),), -1, dtype=torch.long)
        fz = torch.from_numpy(fam).to(torch.float64)
        codes = (fz @ weights).long()                                              # [m, T]
        for t in range(len(set_list)):
            first = torch.full((1 << sizes[t],), -1, dtype=torch.long)
            first.scatter_reduce_(0, codes[:, t], torch.arange(m), reduce="amin", include_self=False)
            lut[offsets[t]:offsets[t] + (1 << sizes[t])] = first
        if bool((lut < 0).any()):   # pragma: no cover - covering_family guarantees every pattern
            raise RuntimeError("internal error: the covering family misses a pattern")
        dev = self.base.device
        per_row = 4 * c * h * w * act.element_size()
        has_conv = any(isinstance(mod, nn.Conv2d) for mod in head.modules())
        chunk = self.chunk if has_conv else max(1, min(HEAD_ROWS, self.budget // per_row))
        plan = LocalPlan(cut=_name(cut), family=m, chunk=chunk, head=head, table=table, set_of=set_of.to(dev),
                         weights=weights.to(dev), offsets=offsets.to(dev), lut=lut.to(dev), shape=(c, h, w))
        return plan if self._agrees(plan, z, keep, x, ref) else None

    def _agrees(self, plan, z, keep, x, ref) -> bool:
        """The plan reproduces the whole model on a few family rows (else the game runs the whole model)."""
        m = z.shape[0]
        pick = torch.linspace(0, m - 1, min(m, 4)).long().to(z.device)
        with torch.inference_mode():
            try:
                got = plan.run(z[pick])
            except Exception:      # a head that cannot run alone: no plan
                return False
            want = self.problem.forward(torch.where(keep[pick], x, ref))
        if got.shape != want.shape:
            return False
        scale = max(1.0, float(want.abs().max()))
        return bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale))


def _sets(dep: torch.Tensor) -> tuple[list[list[int]], torch.Tensor]:
    """Distinct player sets over the positions of ``dep`` ``[L, H, W]`` and each position's set index."""
    npl = dep.shape[0]
    bits = (dep.reshape(npl, -1) > 0).T.to(torch.uint8)                                # [Q, L]
    uniq, inv = torch.unique(bits, dim=0, return_inverse=True)
    sets = [row.nonzero().flatten().tolist() for row in uniq]
    return sets, inv


def _name(node) -> str:
    """A node's module name (``layer1.1.relu``), or its graph name for functions (``relu_2``, ``add_1``)."""
    return str(node.target) if node.op == "call_module" else node.name
