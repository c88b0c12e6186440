"""Shapley values: exact (all ``2^m`` coalitions) and by antithetic permutation sampling.

Exact (thesis Theorem 2.32): ``phi_i = sum_{C not containing i} |C|! (m - |C| - 1)! / m! (v(C + i) - v(C))``,
computed from the ``2^m`` game values in ``O(m 2^m)`` (for each player, the pairs of coalitions differing in
its bit are two interleaved halves of the value table). Sampling: see :mod:`attrkit.games.sampling`.
"""
from __future__ import annotations

import math

import torch

from ..core.budget import DEFAULT_MAX_MEMORY
from ..core.problem import Problem, Result
from .common import check_int, refuse_exact
from .game import Game
from .options import GameOptions, game_method

MAX_PLAYERS = 20
BLOCK = 1 << 16          # coalitions built and evaluated per game call


def coalition_sizes(m: int) -> torch.Tensor:
    """``|C|`` of every coalition ``C`` (row ``c`` = the bits of ``c``) ``[2^m]``, without building the table."""
    size = torch.zeros(1, dtype=torch.int64)
    for _ in range(m):
        size = torch.cat([size, size + 1])
    return size


def coalition_bits(codes: torch.Tensor, width: int) -> torch.Tensor:
    """Coalitions ``[B, width]`` bool from their codes ``[B]`` (player ``j`` present iff bit ``j`` is set)."""
    return ((codes.unsqueeze(1) >> torch.arange(width)) & 1).bool()


def exact_from_values(v: torch.Tensor, m: int) -> torch.Tensor:
    """Shapley values ``[m, K]`` from the values ``v`` ``[2^m, K]`` of all coalitions (row c = bits of c)."""
    v = v.to(torch.float64)
    k = v.shape[1]
    if m == 0:
        return torch.zeros(0, k, dtype=torch.float64)
    size = coalition_sizes(m)                                     # |C| of every coalition
    # w(s) = s! (m - s - 1)! / m! = 1 / (m * C(m - 1, s))
    s = torch.arange(m, dtype=torch.float64)
    w = torch.exp(torch.lgamma(s + 1) + torch.lgamma(m - s) - math.lgamma(m + 1))
    phi = torch.empty(m, k, dtype=torch.float64)
    for i in range(m):
        vv = v.view(1 << (m - 1 - i), 2, 1 << i, k)
        diff = vv[:, 1] - vv[:, 0]                                  # v(C + i) - v(C), C without bit i
        wc = w[size.view(1 << (m - 1 - i), 2, 1 << i)[:, 0]]
        phi[i] = (diff * wc.unsqueeze(-1)).sum((0, 1))
    return phi


def _segments(ls: list[int], block: int):
    """Groups of ``(sample, first code, end code)`` with at most ``block`` coalitions per group (whole samples
    together while they fit; a larger sample in blocks of its own)."""
    group, size = [], 0
    for i, m in enumerate(ls):
        total = 1 << m
        for s in range(0, total, block):
            e = min(total, s + block)
            if size + e - s > block and group:
                yield group
                group, size = [], 0
            group.append((i, s, e))
            size += e - s
    if group:
        yield group


@game_method("shapley", layer="optional", players=True, baseline=True, exact=True,
             summary="exact Shapley values from all 2^m coalitions (Theorem 2.32, O(m 2^m))",
             reference="Shapley 1953; thesis Theorem 2.32")
def shapley(problem: Problem, options: GameOptions, max_players: int = MAX_PLAYERS) -> Result:
    """Exact Shapley values of the players (refused above ``max_players``: 2^m evaluations per sample).

    Coalitions are built and evaluated in blocks; one sample's table of ``2^m x K`` values is held at a time,
    and a run whose tables would not fit ``max_memory`` (default 1 GiB) is refused before anything is
    allocated, with the evaluations and memory it would take.
    """
    check_int("max_players", max_players)
    game = Game(problem, options, cache=False)
    n, L, K = game.n, game.max_players, game.n_values
    ls = [int(m) for m in game.n_players]
    limit = DEFAULT_MAX_MEMORY if problem.max_memory is None else int(problem.max_memory)
    refuse_exact(ls, max_players, game.reps, K, limit, BLOCK)
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    v_full, v_empty = torch.empty(n, K, dtype=torch.float64), torch.empty(n, K, dtype=torch.float64)
    parts: dict = {}
    for group in _segments(ls, BLOCK):
        z = torch.cat([coalition_bits(torch.arange(s, e), L) for _, s, e in group])
        rows = torch.cat([torch.full((e - s,), i, dtype=torch.long) for i, s, e in group])
        v = game(z, rows)
        start = 0
        for i, s, e in group:
            parts.setdefault(i, []).append(v[start:start + e - s])
            start += e - s
            if e == 1 << ls[i]:                                  # the sample's table is complete
                vi = torch.cat(parts.pop(i))
                phi[i, :ls[i]] = exact_from_values(vi, ls[i])
                v_full[i], v_empty[i] = vi[-1], vi[0]
    return game.result({"exact": True, "std_err": torch.zeros(n, L, dtype=torch.float64)}, phi, v_full=v_full,
                       v_empty=v_empty)
