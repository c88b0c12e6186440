"""Shapley values: exact (all ``2^l`` coalitions) and by antithetic permutation sampling.

Exact (thesis Theorem 2.32): ``phi_i = sum_{C not containing i} |C|! (l - |C| - 1)! / l! (v(C + i) - v(C))``,
computed from the ``2^l`` game values in ``O(l 2^l)`` (for each player, the pairs of coalitions differing in
its bit are two interleaved halves of the value table). Sampling (Castro et al. 2009, Observation 2.33): the
mean marginal contribution over random orderings, each ordering paired with its reverse (antithetic,
Mitchell et al. 2022); efficiency holds exactly for every ordering.
"""
from __future__ import annotations

import math

import torch

from ..core.problem import Problem, Result
from ..registry import register
from .common import (all_coalitions, check_int, check_spread, check_tolerance, finish, generator, make_game, pad,
                     refuse_exact)

MAX_PLAYERS = 20


def exact_from_values(v: torch.Tensor, l: int) -> torch.Tensor:
    """Shapley values ``[l, K]`` from the values ``v`` ``[2^l, K]`` of all coalitions (row c = bits of c)."""
    v = v.to(torch.float64)
    k = v.shape[1]
    if l == 0:
        return torch.zeros(0, k, dtype=torch.float64)
    codes = torch.arange(1 << l, dtype=torch.int64)
    size = torch.zeros(1 << l, dtype=torch.int64)
    for j in range(l):
        size += (codes >> j) & 1
    # w(s) = s! (l - s - 1)! / l! = 1 / (l * C(l - 1, s))
    s = torch.arange(l, dtype=torch.float64)
    w = torch.exp(torch.lgamma(s + 1) + torch.lgamma(l - s) - math.lgamma(l + 1))
    phi = torch.empty(l, k, dtype=torch.float64)
    for i in range(l):
        vv = v.view(1 << (l - 1 - i), 2, 1 << i, k)
        diff = vv[:, 1] - vv[:, 0]                                  # v(C + i) - v(C), C without bit i
        wc = w[size.view(1 << (l - 1 - i), 2, 1 << i)[:, 0]]
        phi[i] = (diff * wc.unsqueeze(-1)).sum((0, 1))
    return phi


@register("shapley", family="game", gradients=False, layer="optional", players=True, baseline=True, exact=True,
          summary="exact Shapley values from all 2^l coalitions (Theorem 2.32, O(l 2^l))",
          reference="Shapley 1953; thesis Theorem 2.32")
def shapley(problem: Problem, players=None, masker=None, baseline=None, max_players: int = MAX_PLAYERS,
            all_classes: bool = False, spread: str = "share", head_only: bool | None = None) -> Result:
    """Exact Shapley values of the players (refused above ``max_players``: 2^l evaluations per sample)."""
    check_int("max_players", max_players)
    share = check_spread(spread)
    game = make_game(problem, players, masker, baseline, all_classes, cache=False, head_only=head_only)
    refuse_exact(game.max_players, max_players, game.reps)
    n, L, K = game.n, game.max_players, game.n_values
    zs, rows = [], []
    for i in range(n):
        l = int(game.n_players[i])
        zs.append(pad(all_coalitions(l), L))
        rows.append(torch.full((1 << l,), i, dtype=torch.long))
    v = game(torch.cat(zs), torch.cat(rows))
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    v_full, v_empty = torch.empty(n, K, dtype=torch.float64), torch.empty(n, K, dtype=torch.float64)
    start = 0
    for i in range(n):
        l = int(game.n_players[i])
        vi = v[start:start + (1 << l)]
        start += 1 << l
        phi[i, :l] = exact_from_values(vi, l)
        v_full[i], v_empty[i] = vi[-1], vi[0]
    return finish(game, phi, {"exact": True, "std_err": torch.zeros(n, L, dtype=torch.float64)}, share,
                  v_full, v_empty)


@register("shapley_sampling", family="game", gradients=False, layer="optional", players=True, baseline=True,
          sampled=True, summary="Shapley values by antithetic permutation sampling, with standard errors",
          reference="Castro, Gomez & Tejada 2009; Mitchell et al. 2022")
def shapley_sampling(problem: Problem, players=None, masker=None, baseline=None, n_samples: int = 2000,
                     tolerance: float | None = None, batch_permutations: int = 16, all_classes: bool = False,
                     spread: str = "share", head_only: bool | None = None) -> Result:
    """Mean marginal contributions over random orderings and their reverses.

    ``n_samples``: budget of coalition evaluations per sample (an ordering of ``l`` players costs ``l - 1``);
    with ``tolerance`` the orderings come in rounds of ``batch_permutations`` pairs and a sample stops once
    ``max std_err / (max phi - min phi) < tolerance``. ``info["std_err"]``: standard error of each value
    (spread of the antithetic pair means / sqrt(pairs)).
    """
    check_int("n_samples", n_samples)
    check_int("batch_permutations", batch_permutations)
    tol = check_tolerance(tolerance)
    share = check_spread(spread)
    game = make_game(problem, players, masker, baseline, all_classes, head_only=head_only)
    n, L, K = game.n, game.max_players, game.n_values
    rows_all = torch.arange(n)
    v_full, v_empty = game.full(rows_all), game.empty(rows_all)
    col = game.target_column()
    gens = [generator(problem) for _ in range(n)]
    budget_pairs = [max(1, n_samples // (2 * max(1, int(game.n_players[i]) - 1))) for i in range(n)]
    sums = torch.zeros(n, L, K, dtype=torch.float64)
    sq = torch.zeros(n, L, dtype=torch.float64)
    done_pairs = [0] * n
    active = [i for i in range(n) if int(game.n_players[i]) > 1]
    while active:
        zs, rows, meta = [], [], []
        for i in active:
            l = int(game.n_players[i])
            p = budget_pairs[i] - done_pairs[i] if tol is None else min(batch_permutations, budget_pairs[i] - done_pairs[i])
            rank = torch.rand(p, l, generator=gens[i]).argsort(1).argsort(1)   # rank[j] = position of player j
            rank = torch.cat([rank, l - 1 - rank])                               # each ordering and its reverse
            z = rank.unsqueeze(1) < torch.arange(1, l).view(1, -1, 1)            # [2p, l-1, l] prefixes
            zs.append(pad(z.reshape(-1, l), L))
            rows.append(torch.full((2 * p * (l - 1),), i, dtype=torch.long))
            meta.append((i, l, p, rank))
        vals = game(torch.cat(zs), torch.cat(rows))
        start, still = 0, []
        for i, l, p, rank in meta:
            m = 2 * p * (l - 1)
            vi = vals[start:start + m].view(2 * p, l - 1, K)
            start += m
            chain = torch.cat([v_empty[i].expand(2 * p, 1, K), vi, v_full[i].expand(2 * p, 1, K)], 1)  # [2p, l+1, K]
            marg = chain[:, 1:] - chain[:, :-1]                                   # marginal of the k-th player added
            per = torch.gather(marg, 1, rank.unsqueeze(-1).expand(2 * p, l, K))   # [2p, l, K] by player
            pair = 0.5 * (per[:p] + per[p:])                                     # antithetic pair means
            sums[i, :l] += pair.sum(0)
            sq[i, :l] += (pair[:, :, col[i]] ** 2).sum(0)
            done_pairs[i] += p
            if done_pairs[i] < budget_pairs[i] and tol is not None:
                phi_i, se_i = _mean_se(sums[i, :l, col[i]], sq[i, :l], done_pairs[i])
                spread_i = float(phi_i.max() - phi_i.min())
                if not (done_pairs[i] >= 2 and float(se_i.max()) < tol * max(spread_i, 1e-12)):
                    still.append(i)
        active = still
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    se = torch.zeros(n, L, dtype=torch.float64)
    for i in range(n):
        l = int(game.n_players[i])
        if l == 1:
            phi[i, 0] = v_full[i] - v_empty[i]
            continue
        phi[i, :l] = sums[i, :l] / done_pairs[i]
        se[i, :l] = _mean_se(sums[i, :l, col[i]], sq[i, :l], done_pairs[i])[1]
    info = {"std_err": se, "n_permutations": torch.tensor([2 * p for p in done_pairs]),
            "exact": bool((game.n_players <= 1).all())}
    return finish(game, phi, info, share, v_full, v_empty)


def _mean_se(total: torch.Tensor, total_sq: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    mean = total / p
    if p < 2:
        return mean, torch.full_like(mean, float("inf"))
    var = (total_sq - p * mean ** 2).clamp_min(0) / (p - 1)
    return mean, (var / p).sqrt()
