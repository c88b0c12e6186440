"""Shapley values by antithetic permutation sampling, stratified by position.

``phi_i = (1/m) sum_k mu_ik`` where ``mu_ik`` is player i's mean marginal contribution to coalitions of size
``k`` — the position it takes in a random ordering (thesis Observation 2.33; Castro et al. 2009). Each ordering
is paired with its reverse (antithetic; Mitchell et al. 2022), so one pair gives a sample of
``nu_ij = (mu_ij + mu_i,m-1-j) / 2`` for the stratum ``j = min(k, m-1-k)`` where i landed. Strata whose
coalitions are few (the smallest and largest sizes) are enumerated exactly when that costs no more than the
budget sampling would spend on them (Maleki et al. 2013: stratified sampling); the rest are post-stratified
means of the sampled pairs. The budget ``n_samples`` counts model evaluations (repeated coalitions are cached,
so free). Efficiency ``sum phi = v(N) - v(0)`` is restored by the variance-weighted projection, and
``info["std_err"]`` is the standard error of each value after it.
"""
from __future__ import annotations

import math

import torch

from ..core.problem import Problem, Result
from .common import check_int, check_tolerance, generator, pad, subsets_of_size
from .game import Game
from .options import GameOptions, game_method


def strata(m: int) -> tuple[list[list[int]], torch.Tensor]:
    """Positions of each stratum ``j`` (``{j, m-1-j}``) and its probability ``p_j`` (positions / m)."""
    pos = [sorted({j, m - 1 - j}) for j in range((m + 1) // 2)]
    return pos, torch.tensor([len(p) / m for p in pos], dtype=torch.float64)


def plan_exact(m: int, budget: int) -> tuple[int, list[int]]:
    """How many strata (from the ends) to enumerate, and the coalition sizes that takes. Stratum ``j`` needs
    the sizes ``j+1`` and ``m-1-j`` on top of the previous strata; it is enumerated while that costs no more
    than its share of the budget under sampling (its positions / the positions left)."""
    if m > 62:
        return 0, []
    pos, _ = strata(m)
    have, sizes, left, done = {0, m}, [], budget, 0
    for j, p in enumerate(pos):
        need = sorted({j + 1, m - 1 - j} - have)
        cost = sum(math.comb(m, s) for s in need)
        if cost > left * len(p) / (m - 2 * j):
            break
        have |= set(need)
        sizes += need
        left -= cost
        done = j + 1
    return done, sizes


def position_means(m: int, k: int, low: tuple, high: tuple) -> torch.Tensor:
    """``mu_ik`` ``[m, K]``: mean over coalitions C of size k without i of ``v(C + i) - v(C)``, from the values
    of all coalitions of sizes k (``low = (codes, values)``) and k+1 (``high``)."""
    codes_k, vals_k = low
    codes_k1, vals_k1 = high
    where = {c: r for r, c in enumerate(codes_k.tolist())}
    bits = ((codes_k1.unsqueeze(1) >> torch.arange(m)) & 1).bool()
    mu = torch.zeros(m, vals_k1.shape[1], dtype=torch.float64)
    for i in range(m):
        sel = bits[:, i]
        idx = torch.tensor([where[c] for c in (codes_k1[sel] ^ (1 << i)).tolist()], dtype=torch.long)
        mu[i] = (vals_k1[sel] - vals_k[idx]).sum(0)
    return mu / math.comb(m - 1, k)


@game_method("shapley_sampling", layer="optional", players=True, baseline=True, sampled=True,
             summary="Shapley values by antithetic permutation sampling (stratified), with std errors; "
                     "n_samples = model evaluations, not permutations",
             reference="Castro, Gomez & Tejada 2009; Maleki et al. 2013; Mitchell et al. 2022", error="std_err")
def shapley_sampling(problem: Problem, options: GameOptions, n_samples: int = 2000, tolerance: float | None = None,
                     batch_permutations: int = 16) -> Result:
    """Shapley values from ``n_samples`` model evaluations per sample (see the module docstring).

    ``n_samples`` counts model evaluations, not permutations (Captum's ``n_samples`` counts permutations): an
    ordering of ``m`` players visits ``m + 1`` coalitions, ``m - 1`` of them new evaluations, so ``P``
    permutations cost about ``P (m - 1)``; budgets below one antithetic pair (``2 (m - 1)``) are refused.

    With ``tolerance`` the ordering pairs come in rounds of ``batch_permutations`` and a sample stops once
    ``max std_err / (max phi - min phi) < tolerance``. ``info["exact_strata"]``: strata enumerated exactly;
    ``info["n_permutations"]``: orderings sampled per sample.
    """
    check_int("n_samples", n_samples)
    check_int("batch_permutations", batch_permutations)
    tol = check_tolerance(tolerance)
    game = Game(problem, options)
    n, L, K = game.n, game.max_players, game.n_values
    need = 2 * (L - 1)
    if n_samples < need:
        raise ValueError(
            f"n_samples={n_samples} is too small for {L} players: n_samples counts model evaluations per sample, not "
            f"permutations (as Captum's n_samples does). One ordering of {L} players passes through {L + 1} "
            f"coalitions ({L - 1} new evaluations besides v(all) and v(none)); an antithetic pair costs {need}, so "
            f"fewer evaluations give no sample at all. Use n_samples >= {need}; {n_samples} permutations are about "
            f"n_samples={n_samples * (L - 1)}")
    v_full, v_empty = game.ends()
    col = game.target_column()
    planned = n_samples if tol is None else n_samples // 4      # adaptive runs enumerate less up front
    states = [_State(int(game.n_players[i]), planned, generator(problem)) for i in range(n)]

    # exact strata: every coalition of their sizes, all samples in one call
    zs, rs = [], []
    for i, st in enumerate(states):
        for size in st.sizes:
            z = subsets_of_size(st.m, size)
            zs.append(pad(z, L))
            rs.append(torch.full((z.shape[0],), i, dtype=torch.long))
    vals = game(torch.cat(zs), torch.cat(rs)) if zs else None
    start = 0
    for i, st in enumerate(states):
        by_size = {0: (torch.zeros(1, dtype=torch.int64), v_empty[i:i + 1]),
                   st.m: (torch.tensor([(1 << st.m) - 1 if st.m < 63 else -1]), v_full[i:i + 1])}
        for size in st.sizes:
            z = subsets_of_size(st.m, size)
            codes = (z.to(torch.int64) << torch.arange(st.m)).sum(1)
            by_size[size] = (codes, vals[start:start + z.shape[0]])
            start += z.shape[0]
        st.exact_part(by_size, K)
        st.budget_left = n_samples - sum(math.comb(st.m, s) for s in st.sizes)

    # sampled strata: antithetic ordering pairs within the remaining budget of evaluations
    seen: set = set()
    active = [i for i, st in enumerate(states) if st.sampling]
    while active:
        zs, rs, meta, still = [], [], [], []
        for i in active:
            st = states[i]
            want = batch_permutations if tol is not None else max(1, st.budget_left // (2 * st.cost_per_perm) + 4)
            rank = torch.rand(want, st.m, generator=st.g).argsort(1).argsort(1)
            rank = torch.stack([rank, st.m - 1 - rank], 1)                         # [want, 2, m]
            pref = rank.unsqueeze(2) < torch.arange(1, st.m).view(1, 1, -1, 1)     # [want, 2, m-1, m]
            groups = [pad(p.reshape(-1, st.m), L) for p in pref]
            took, cost = game.within_budget(groups, i, st.budget_left, seen)
            st.budget_left -= cost
            st.drawn += want
            if took:
                zs.append(torch.cat(groups[:took]))
                rs.append(torch.full((zs[-1].shape[0],), i, dtype=torch.long))
                meta.append((i, took, rank[:took]))
            st.finished = took < want or st.budget_left <= 0 or st.drawn >= 4 * n_samples
        vals = game(torch.cat(zs), torch.cat(rs)) if zs else None
        start = 0
        for i, took, rank in meta:
            st = states[i]
            m = took * 2 * (st.m - 1)
            chain = torch.cat([v_empty[i].expand(took * 2, 1, K), vals[start:start + m].view(took * 2, st.m - 1, K),
                               v_full[i].expand(took * 2, 1, K)], 1)
            start += m
            st.add(chain, rank.reshape(took * 2, st.m), int(col[i]))
        for i in active:
            st = states[i]
            if st.finished:
                continue
            if tol is not None and st.pairs >= 2:
                phi_i, se_i = st.estimate(v_full[i] - v_empty[i], int(col[i]))
                spread_i = float(phi_i[:, col[i]].max() - phi_i[:, col[i]].min())
                if float(se_i.max()) < tol * max(spread_i, 1e-12):
                    continue
            still.append(i)
        active = still

    phi = torch.zeros(n, L, K, dtype=torch.float64)
    se = torch.zeros(n, L, dtype=torch.float64)
    for i, st in enumerate(states):
        phi[i, :st.m], se[i, :st.m] = st.estimate(v_full[i] - v_empty[i], int(col[i]))
    info = {"std_err": se, "n_permutations": torch.tensor([2 * st.pairs for st in states]),
            "exact_strata": torch.tensor([st.n_exact for st in states]),
            "exact": all(not st.sampling for st in states)}
    return game.result(info, phi, v_full=v_full, v_empty=v_empty)


class _State:
    """One sample's strata: the exact part and the running sums of the sampled pair means."""

    def __init__(self, m: int, budget: int, g: torch.Generator):
        self.m, self.g = m, g
        self.pos, self.p = strata(m)
        self.n_exact, self.sizes = plan_exact(m, budget) if m > 1 else ((m + 1) // 2, [])
        self.sampling = self.n_exact < len(self.pos)
        have = set(self.sizes) | {0, m}
        self.cost_per_perm = max(1, sum(1 for s in range(1, m) if s not in have))
        self.budget_left, self.drawn, self.pairs, self.finished = 0, 0, 0, False
        h = len(self.pos)
        self.count = torch.zeros(m, h, dtype=torch.float64)
        self.sum, self.sq, self.exact = None, torch.zeros(m, h, dtype=torch.float64), None

    def exact_part(self, by_size: dict, k: int) -> None:
        self.exact = torch.zeros(self.m, k, dtype=torch.float64)
        self.sum = torch.zeros(self.m, len(self.pos), k, dtype=torch.float64)
        for j in range(self.n_exact):
            for kpos in self.pos[j]:
                self.exact += position_means(self.m, kpos, by_size[kpos], by_size[kpos + 1]) / self.m

    def add(self, chain: torch.Tensor, rank: torch.Tensor, col: int) -> None:
        """``chain`` ``[2p, m+1, K]`` values along each ordering, ``rank`` ``[2p, m]`` positions of the players;
        rows come in pairs (an ordering, then its reverse)."""
        two_p, m = rank.shape
        p = two_p // 2
        marg = chain[:, 1:] - chain[:, :-1]
        per = torch.gather(marg, 1, rank.unsqueeze(-1).expand(two_p, m, marg.shape[2]))      # by player
        pair = per.view(p, 2, m, -1).mean(1)                                                # [p, m, K]
        first = rank.view(p, 2, m)[:, 0]
        stratum = torch.minimum(first, m - 1 - first)                                       # [p, m]
        onehot = torch.nn.functional.one_hot(stratum, len(self.pos)).to(torch.float64)      # [p, m, H]
        self.count += onehot.sum(0)
        self.sum += torch.einsum("plh,plk->lhk", onehot, pair)
        self.sq += torch.einsum("plh,pl->lh", onehot, pair[:, :, col] ** 2)
        self.pairs += p

    def estimate(self, delta: torch.Tensor, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.m
        if m == 1:
            return delta.view(1, -1).clone(), torch.zeros(1, dtype=torch.float64)
        phi = self.exact.clone()
        var = torch.zeros(m, dtype=torch.float64)
        sampled = list(range(self.n_exact, len(self.pos)))
        if sampled:
            cnt, tot, sq = self.count[:, sampled], self.sum[:, sampled], self.sq[:, sampled]
            pooled = tot.sum(1) / cnt.sum(1, keepdim=True).clamp_min(1)                      # [m, K]
            mean = torch.where(cnt.unsqueeze(-1) > 0, tot / cnt.clamp_min(1).unsqueeze(-1), pooled.unsqueeze(1))
            ss = (sq - cnt * mean[:, :, col] ** 2).clamp_min(0)
            n_all = cnt.sum(1)                                  # fallback: spread of all the player's samples
            plain_var = (sq.sum(1) - n_all * pooled[:, col] ** 2).clamp_min(0) / (n_all - 1).clamp_min(1)
            cell_var = torch.where(cnt >= 2, ss / (cnt - 1).clamp_min(1), plain_var.unsqueeze(1))
            ps = self.p[sampled]
            phi += (ps.view(1, -1, 1) * mean).sum(1)
            var = (ps.view(1, -1) ** 2 * cell_var / cnt.clamp_min(1)).sum(1)
            var = torch.where(cnt.sum(1) < 2, torch.full_like(var, float("inf")), var)
        gap = delta - phi.sum(0)                                 # efficiency: variance-weighted projection
        total = var.sum()
        if torch.isfinite(total) and total > 0:
            w = var / total
            phi += w.unsqueeze(1) * gap.unsqueeze(0)
            var = (var - var ** 2 / total).clamp_min(0)
        else:
            phi += gap.unsqueeze(0) / m
        return phi, var.sqrt()
