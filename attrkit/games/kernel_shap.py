"""KernelSHAP (Lundberg & Lee 2017; thesis Proposition 2.34): LIME's weighted least squares with the Shapley
kernel ``pi(z) = (l - 1) / (C(l, |z|) |z| (l - |z|))``, with efficiency ``sum phi = v(1) - v(0)`` held exactly
as a constraint. With every coalition in the design the solution is the exact Shapley value.

Design: coalition sizes whose whole layer fits the budget are enumerated (smallest and largest first, as
shap does); the rest is sampled in antithetic pairs ``(z, 1 - z)`` with sizes drawn by kernel mass.
Standard errors are analytic (Covert & Lee 2021): the constrained solution is a smooth function of the sample
means of ``z z^T`` and ``z y``; its linearisation ``M (b - A phi)`` over independent pairs gives a sandwich
covariance. With ``tolerance`` the pairs come in rounds and a sample stops once
``max std_err / (max phi - min phi) < tolerance``.
"""
from __future__ import annotations

import math

import torch

from ..core.problem import Problem, Result
from .common import check_int, check_tolerance, generator, log_binom, pad, subsets_of_size
from .game import Game
from .options import GameOptions, game_method


def size_mass(l: int) -> torch.Tensor:
    """Kernel mass of each coalition size ``s = 0..l`` (``C(l, s) pi(s) = (l - 1) / (s (l - s))``; 0 at the ends)."""
    s = torch.arange(l + 1, dtype=torch.float64)
    m = torch.zeros(l + 1, dtype=torch.float64)
    if l >= 2:
        m[1:l] = (l - 1) / (s[1:l] * (l - s[1:l]))
    return m


def plan(l: int, budget: int, everything: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Enumerated coalitions ``[E, l]``, their kernel weights ``[E]``, and the kernel mass per size left to
    sampling ``[l + 1]`` (zero for enumerated sizes). Sizes ``s`` and ``l - s`` are enumerated together when
    the budget they would get by kernel mass covers all their coalitions (shap's rule); ``everything``
    enumerates all sizes."""
    mass = size_mass(l)
    left_mass = mass.clone()
    zs, ws = [], []
    left = budget
    for s in range(1, l // 2 + 1):
        sizes = [s] if s == l - s else [s, l - s]
        count = sum(math.comb(l, t) for t in sizes)
        share = float(left_mass[sizes].sum() / left_mass.sum()) if left_mass.sum() > 0 else 0.0
        if not everything and (count > left or left * share < count - 1e-8):
            break
        for t in sizes:
            zs.append(subsets_of_size(l, t))
            ws.append(torch.full((math.comb(l, t),), math.exp(math.log(l - 1) - log_binom(l, t) - math.log(t * (l - t))),
                                 dtype=torch.float64))
            left_mass[t] = 0
        left -= count
    z = torch.cat(zs) if zs else torch.zeros(0, l, dtype=torch.bool)
    w = torch.cat(ws) if ws else torch.zeros(0, dtype=torch.float64)
    return z, w, left_mass


def solve(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, delta: torch.Tensor):
    """Constrained weighted least squares: ``min sum w (y - z phi)^2`` s.t. ``sum phi = delta``.

    ``z`` ``[n, l]``, ``w`` ``[n]``, ``y`` ``[n, K]`` (values minus ``v(0)``), ``delta`` ``[K]``.
    Returns ``phi`` ``[l, K]`` and ``M`` ``[l, l]`` (the projected inverse used for standard errors).
    """
    z = z.to(torch.float64)
    zw = z * w.unsqueeze(1)
    a = zw.T @ z
    b = zw.T @ y
    l = a.shape[0]
    ones = torch.ones(l, 1, dtype=torch.float64)
    try:
        ainv = torch.linalg.inv(a)
        if not torch.isfinite(ainv).all():
            raise RuntimeError
    except RuntimeError:
        ainv = torch.linalg.pinv(a, hermitian=True)
    a1 = ainv @ ones                                       # [l, 1]
    ab = ainv @ b                                          # [l, K]
    denom = (ones.T @ a1).clamp_min(1e-300)
    lam = (ones.T @ ab - delta.view(1, -1)) / denom        # [1, K]
    phi = ab - a1 @ lam
    m = ainv - (a1 @ a1.T) / denom
    return phi, m


def pair_std_err(m: torch.Tensor, phi: torch.Tensor, zp: torch.Tensor, yp: torch.Tensor, yq: torch.Tensor,
                 w: float) -> torch.Tensor:
    """Sandwich standard errors from ``p`` sampled pairs ``(z, 1 - z)`` with values ``yp``, ``yq`` ``[p]``
    (target column) and weight ``w`` per row: ``Cov(phi) ~ M (w^2 p Cov(q)) M``, ``q = z e_z + (1 - z) e_{1-z}``."""
    p = zp.shape[0]
    if p < 2:
        return torch.full((m.shape[0],), float("inf"), dtype=torch.float64)
    zf = zp.to(torch.float64)
    zc = 1.0 - zf
    ez = yp - zf @ phi
    ec = yq - zc @ phi
    q = zf * ez.unsqueeze(1) + zc * ec.unsqueeze(1)        # [p, l]
    qc = q - q.mean(0, keepdim=True)
    cov_q = qc.T @ qc / (p - 1)
    cov = (w ** 2) * p * (m @ cov_q @ m)
    return cov.diagonal().clamp_min(0).sqrt()


@game_method("kernel_shap", layer="optional", players=True, baseline=True, sampled=True,
             summary="KernelSHAP: Shapley-kernel weighted regression, efficiency exact, std errors",
             reference="Lundberg & Lee 2017; Covert & Lee 2021; thesis Proposition 2.34", error="std_err")
def kernel_shap(problem: Problem, options: GameOptions, n_samples: int = 2000, tolerance: float | None = None,
                batch_pairs: int = 64) -> Result:
    """KernelSHAP with a budget of ``n_samples`` model evaluations per sample (repeated coalitions are free;
    with ``n_samples >= 2^l - 2`` every coalition is used and the result is exact).

    ``info["std_err"]``: analytic standard errors; ``info["n_samples"]``: coalitions in the regression
    (repeats counted); ``info["exact"]``: every coalition was used. With ``tolerance`` only a quarter of the
    budget goes to enumerated sizes up front; pairs then come in rounds of ``batch_pairs`` until
    ``max std_err / (max phi - min phi) < tolerance`` or the budget is spent.
    """
    check_int("n_samples", n_samples)
    check_int("batch_pairs", batch_pairs)
    tol = check_tolerance(tolerance)
    game = Game(problem, options)
    n, L, K = game.n, game.max_players, game.n_values
    if n_samples < L:
        raise ValueError(f"n_samples={n_samples} is smaller than the number of players ({L}): the regression "
                         f"needs at least as many coalitions as players; use n_samples >= {L} (e.g. {max(2000, 4 * L)})")
    v_full, v_empty = game.ends()
    col = game.target_column()
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    se = torch.zeros(n, L, dtype=torch.float64)
    used = torch.zeros(n, dtype=torch.long)
    exact = torch.zeros(n, dtype=torch.bool)

    state = []
    for i in range(n):
        l = int(game.n_players[i])
        everything = l < 62 and n_samples >= (1 << l) - 2 and tol is None
        planned = n_samples if tol is None else max(2 * l, n_samples // 4)   # adaptive runs enumerate less up front
        z_e, w_e, rest = plan(l, (1 << l) - 2 if everything else planned, everything)
        state.append({"l": l, "z_e": z_e, "w_e": w_e, "rest": rest, "left": n_samples - z_e.shape[0],
                      "drawn": 0, "done": 0, "zp": [], "yp": [], "yq": [], "g": generator(problem),
                      "sampling": l > 1 and bool(rest.sum() > 0)})
    # enumerated part, all samples in one call
    zs = [pad(s["z_e"], L) for s in state if s["l"] > 1]
    rs = [torch.full((s["z_e"].shape[0],), i, dtype=torch.long) for i, s in enumerate(state) if s["l"] > 1]
    ve = game(torch.cat(zs), torch.cat(rs)) if zs else torch.zeros(0, K, dtype=torch.float64)
    start = 0
    for i, s in enumerate(state):
        if s["l"] > 1:
            s["y_e"] = ve[start:start + s["z_e"].shape[0]] - v_empty[i]
            start += s["z_e"].shape[0]
            if s["z_e"].shape[0]:
                phi[i, :s["l"]], se[i, :s["l"]] = _fit(s, v_full[i] - v_empty[i], col[i])
    # sampled part: antithetic pairs (z, 1 - z) while the budget of evaluations lasts (repeats are free)
    seen: set = set()
    active = [i for i, s in enumerate(state) if s["sampling"]]
    while active:
        zs, rs, meta = [], [], []
        for i in active:
            s = state[i]
            want = batch_pairs if tol is not None else max(1, s["left"] // 2 + 4)
            sizes = torch.multinomial(s["rest"], want, replacement=True, generator=s["g"])
            rank = torch.rand(want, s["l"], generator=s["g"]).argsort(1).argsort(1)
            z = rank < sizes.unsqueeze(1)
            groups = [pad(torch.stack([a, ~a]), L) for a in z]
            took, cost = game.within_budget(groups, i, s["left"], seen)
            s["left"] -= cost
            s["drawn"] += want
            s["finished"] = took < want or s["left"] <= 0 or s["drawn"] >= 4 * n_samples
            if took:
                zs += [pad(z[:took], L), pad(~z[:took], L)]
                rs.append(torch.full((2 * took,), i, dtype=torch.long))
            meta.append((i, took, z[:took]))
        vals = game(torch.cat(zs), torch.cat(rs)) if zs else None
        start, still = 0, []                      # vals: [z, 1 - z] of each sample in turn
        for i, p, z in meta:
            s = state[i]
            if p > 0:
                vi = vals[start:start + 2 * p] - v_empty[i]
                start += 2 * p
                s["zp"].append(z)
                s["yp"].append(vi[:p])
                s["yq"].append(vi[p:])
                s["done"] += p
                ph, sei = _fit(s, v_full[i] - v_empty[i], col[i])
                phi[i, :s["l"]], se[i, :s["l"]] = ph, sei
            if s["finished"]:
                continue
            if tol is not None and s["done"] >= 2:
                ph = phi[i, :s["l"], col[i]]
                if float(se[i, :s["l"]].max()) < tol * max(float(ph.max() - ph.min()), 1e-12):
                    continue
            still.append(i)
        active = still
    for i, s in enumerate(state):
        l = s["l"]
        if l == 1:
            phi[i, 0] = v_full[i] - v_empty[i]
            exact[i] = True
        else:
            exact[i] = not s["sampling"] and s["z_e"].shape[0] == (1 << l) - 2
        used[i] = s["z_e"].shape[0] + 2 * s["done"] if l > 1 else 0
    singular = ~torch.isfinite(phi).flatten(1).all(1)
    if bool(singular.any()):       # too few distinct coalitions: the regression does not determine the values
        raise ValueError(f"KernelSHAP's regression is singular for {int(singular.sum())} of {n} sample(s): "
                         f"n_samples={n_samples} coalitions do not determine the values of {L} players (its "
                         f"solution is not finite); use more samples, e.g. n_samples >= {4 * L} (default 2000)")
    info = {"std_err": se, "n_samples": used, "exact": bool(exact.all())}
    return game.result(info, phi, v_full=v_full, v_empty=v_empty)


def _fit(s: dict, delta: torch.Tensor, col: int):
    l = s["l"]
    z_parts, w_parts, y_parts = [s["z_e"]], [s["w_e"]], [s["y_e"]]
    w_pair = 0.0
    if s["zp"]:
        zp = torch.cat(s["zp"])
        p = zp.shape[0]
        w_pair = float(s["rest"].sum()) / (2 * p)
        z_parts += [zp, ~zp]
        w_parts.append(torch.full((2 * p,), w_pair, dtype=torch.float64))
        y_parts += [torch.cat(s["yp"]), torch.cat(s["yq"])]
    z = torch.cat(z_parts)
    w = torch.cat(w_parts)
    y = torch.cat(y_parts)
    phi, m = solve(z, w, y, delta)
    if s["zp"]:
        se = pair_std_err(m, phi[:, col], zp, torch.cat(s["yp"])[:, col], torch.cat(s["yq"])[:, col], w_pair)
    else:
        se = torch.zeros(l, dtype=torch.float64)
    return phi, se
