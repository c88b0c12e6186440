"""Shapley values: exact (all ``2^l`` coalitions) and by antithetic permutation sampling.

Exact (thesis Theorem 2.32): ``phi_i = sum_{C not containing i} |C|! (l - |C| - 1)! / l! (v(C + i) - v(C))``,
computed from the ``2^l`` game values in ``O(l 2^l)`` (for each player, the pairs of coalitions differing in
its bit are two interleaved halves of the value table). Sampling: see :mod:`attrkit.games.sampling`.
"""
from __future__ import annotations

import math

import torch

from ..core.problem import Problem, Result
from ..registry import register
from .common import all_coalitions, check_int, check_spread, finish, make_game, pad, refuse_exact

MAX_PLAYERS = 20


def exact_from_values(v: torch.Tensor, l: int) -> torch.Tensor:
    """Shapley values ``[l, K]`` from the values ``v`` ``[2^l, K]`` of all coalitions (row c = bits of c)."""
    v = v.to(torch.float64)
    k = v.shape[1]
    if l == 0:
        return torch.zeros(0, k, dtype=torch.float64)
    size = all_coalitions(l).sum(1)                               # |C| of every coalition
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
            all_classes: bool = False, spread: str = "share", head_only: bool | None = None,
            local: bool | None = None) -> Result:
    """Exact Shapley values of the players (refused above ``max_players``: 2^l evaluations per sample).

    ``local``: image games on CNNs run the convolutional prefix once per local pattern of players instead of once
    per coalition (exact; ``None`` decides by cost, ``False`` runs the whole network per coalition, ``True``
    insists; :mod:`attrkit.games.local`).
    """
    check_int("max_players", max_players)
    share = check_spread(spread)
    game = make_game(problem, players, masker, baseline, all_classes, cache=False, head_only=head_only, local=local)
    refuse_exact(int(game.n_players.max()), max_players, game.reps)
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


