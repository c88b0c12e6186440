"""LIME (Ribeiro et al. 2016; thesis equations 2.2-2.5): a linear model ``g(z) = b + sum_i w_i z_i`` fitted on
coalitions ``z`` drawn uniformly from ``{0,1}^m`` (plus the full coalition), weighted by an exponential kernel on
the distance to the full coalition, solved in closed form ``w = (X^T H X)^-1 X^T H f(m(X))`` (equation 2.5), with
optional ridge. The kernel follows lime's implementation: ``pi = sqrt(exp(-d^2 / width^2))`` with ``d`` the
cosine distance (lime_image; width 0.25) or the Euclidean distance (lime_tabular; width 0.75 sqrt(m)).
With ``n_samples >= 2^m`` every coalition is used once (deterministic).
"""
from __future__ import annotations

import torch

from ..core.problem import Problem, Result
from .common import all_coalitions, check_int, generator, pad
from .game import Game
from .options import GameOptions, game_method

DISTANCES = ("cosine", "euclidean")


def kernel_weights(z: torch.Tensor, width: float, distance: str) -> torch.Tensor:
    """LIME's kernel ``sqrt(exp(-d^2 / width^2))`` of each coalition's distance to the full coalition."""
    m = z.shape[1]
    k = z.to(torch.float64).sum(1)
    if distance == "cosine":
        d = 1.0 - torch.sqrt(k / m)
    else:
        d = torch.sqrt(m - k)
    return torch.exp(-(d ** 2) / width ** 2).sqrt()


def weighted_fit(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, ridge: float = 0.0):
    """Weighted least squares with intercept (equation 2.5, ridge on the coefficients only).

    Returns ``coef`` ``[m, K]``, ``intercept`` ``[K]`` and the weighted ``R^2`` ``[K]``."""
    x = torch.cat([torch.ones(z.shape[0], 1, dtype=torch.float64), z.to(torch.float64)], 1)
    xw = x * w.unsqueeze(1)
    a = xw.T @ x
    if ridge:
        a = a + ridge * torch.diag(torch.cat([torch.zeros(1), torch.ones(z.shape[1])]).to(torch.float64))
    b = xw.T @ y
    try:
        beta = torch.linalg.solve(a, b)
        if not torch.isfinite(beta).all():
            raise RuntimeError
    except RuntimeError:
        beta = torch.linalg.pinv(a, hermitian=True) @ b
    pred = x @ beta
    wsum = w.sum()
    mean = (w.unsqueeze(1) * y).sum(0) / wsum
    ss_res = (w.unsqueeze(1) * (y - pred) ** 2).sum(0)
    ss_tot = (w.unsqueeze(1) * (y - mean) ** 2).sum(0)
    r2 = torch.where(ss_tot > 1e-300, 1 - ss_res / ss_tot.clamp_min(1e-300),
                     torch.where(ss_res <= 1e-24, torch.ones_like(ss_res), torch.zeros_like(ss_res)))
    return beta[1:], beta[0], r2


@game_method("lime", layer="optional", players=True, baseline=True, sampled=True,
             summary="LIME: kernel-weighted linear fit on random coalitions (equation 2.5), with its R^2",
             reference="Ribeiro, Singh & Guestrin 2016; thesis equation 2.5")
def lime(problem: Problem, options: GameOptions, n_samples: int = 1000, kernel_width: float | None = None,
         distance: str = "cosine", ridge: float = 0.0) -> Result:
    """LIME coefficients per player (``info["r2"]``: weighted R^2 of the fit, ``info["intercept"]``)."""
    check_int("n_samples", n_samples)
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    if kernel_width is not None and not (isinstance(kernel_width, (int, float)) and kernel_width > 0):
        raise ValueError(f"kernel_width must be a positive number, got {kernel_width!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or ridge < 0:
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}")
    game = Game(problem, options)
    n, L, K = game.n, game.max_players, game.n_values
    if n_samples < L + 1:
        raise ValueError(f"n_samples={n_samples} is too small for a linear fit of {L} players plus an intercept; "
                         f"use n_samples >= {L + 1} (lime's default is 1000)")
    designs, zs, rs = [], [], []
    for i in range(n):
        m = int(game.n_players[i])
        if m < 30 and n_samples >= (1 << m):
            z = all_coalitions(m)
        else:
            z = torch.rand(n_samples - 1, m, generator=generator(problem)) < 0.5
            z = torch.cat([torch.ones(1, m, dtype=torch.bool), z])
        designs.append(z)
        zs.append(pad(z, L))
        rs.append(torch.full((z.shape[0],), i, dtype=torch.long))
    v = game(torch.cat(zs), torch.cat(rs))
    col = game.target_column()
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    r2 = torch.zeros(n, dtype=torch.float64)
    intercept = torch.zeros(n, dtype=torch.float64)
    widths = []
    start = 0
    for i, z in enumerate(designs):
        m = z.shape[1]
        width = float(kernel_width) if kernel_width is not None else (0.25 if distance == "cosine" else 0.75 * m ** 0.5)
        widths.append(width)
        y = v[start:start + z.shape[0]]
        start += z.shape[0]
        coef, b, r = weighted_fit(z, kernel_weights(z, width, distance), y, float(ridge))
        phi[i, :m] = coef
        r2[i], intercept[i] = r[col[i]], b[col[i]]
    info = {"r2": r2, "intercept": intercept, "kernel_width": widths[0] if len(set(widths)) == 1 else widths,
            "distance": distance, "ridge": float(ridge), "exact": False}
    return game.result(info, phi)
