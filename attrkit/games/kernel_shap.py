"""KernelSHAP (Lundberg & Lee 2017; thesis Proposition 2.34): LIME's weighted least squares with the Shapley
kernel over ``d`` players ``pi(z) = (d - 1) / (C(d, |z|) |z| (d - |z|))``, with efficiency ``sum phi = v(1) - v(0)`` held exactly
as a constraint. With every coalition in the design the solution is the exact Shapley value.

Design (:mod:`attrkit.games.kernel_strata`): coalition sizes whose whole class ``{s, d - s}`` fits its share
of the budget are enumerated (smallest and largest first, as shap does); the other classes are sampled as
complementary pairs ``(z, 1 - z)``, stratified by size, without replacement, with a fixed number of pairs per
class (``K_c^ALPHA`` x sizes^(1 - ALPHA)). Paired sampling makes the fit exact for games with at most pairwise
interactions, so a first- or second-order Taylor surrogate of the model (the control variates of Goldwasser &
Hooker 2023) would remove nothing the regression has not already removed: what is left is the higher-order
part, and the design spends the budget where it is largest. Standard errors are the stratified sandwich of
the constrained solution's linearisation (Covert & Lee 2021). With ``tolerance`` the pairs come in rounds and a
sample stops once ``max std_err / (max phi - min phi) < tolerance``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..core.problem import Problem, Result
from .common import check_int, check_tolerance, generator, log_binom, pad, subsets_of_size
from .game import Game
from .options import GameOptions, game_method
from .kernel_strata import Strata

ALPHA = 0.5          # pairs per size class ~ K_c^ALPHA (sizes in c)^(1 - ALPHA): 1 = shap's kernel mass, 0 = leverage


def size_mass(d: int) -> torch.Tensor:
    """Kernel mass of each coalition size ``s = 0..d`` (``C(d, s) pi(s) = (d - 1) / (s (d - s))``; 0 at the ends)."""
    s = torch.arange(d + 1, dtype=torch.float64)
    m = torch.zeros(d + 1, dtype=torch.float64)
    if d >= 2:
        m[1:d] = (d - 1) / (s[1:d] * (d - s[1:d]))
    return m


def class_share(d: int, s: int, mass: torch.Tensor, alpha: float = ALPHA) -> float:
    """Sampling share of the size class ``{s, d - s}``: ``K_c^alpha x (sizes in c)^(1 - alpha)``."""
    k = float(mass[s] + (mass[d - s] if 2 * s != d else 0.0))
    return k ** alpha * (1.0 if 2 * s == d else 2.0) ** (1.0 - alpha)


def plan(d: int, budget: int, everything: bool = False, alpha: float = ALPHA) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Enumerated coalitions ``[E, d]``, their kernel weights ``[E]``, and the sizes ``s <= d/2`` of the classes
    left to sampling. A class ``{s, d - s}`` is enumerated (smallest first) when the budget it would get by its
    sampling share covers all its coalitions (shap's rule); ``everything`` enumerates all classes."""
    mass = size_mass(d)
    rest = list(range(1, d // 2 + 1))
    zs, ws = [], []
    left = budget
    while rest:
        s = rest[0]
        sizes = [s] if s == d - s else [s, d - s]
        count = sum(math.comb(d, t) for t in sizes)
        share = class_share(d, s, mass, alpha) / sum(class_share(d, r, mass, alpha) for r in rest)
        if not everything and (count > left or left * share < count - 1e-8):
            break
        for t in sizes:
            zs.append(subsets_of_size(d, t))
            ws.append(torch.full((math.comb(d, t),), math.exp(math.log(d - 1) - log_binom(d, t) - math.log(t * (d - t))),
                                 dtype=torch.float64))
        left -= count
        rest.pop(0)
    z = torch.cat(zs) if zs else torch.zeros(0, d, dtype=torch.bool)
    w = torch.cat(ws) if ws else torch.zeros(0, dtype=torch.float64)
    return z, w, rest


def solve(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, delta: torch.Tensor):
    """Constrained weighted least squares: ``min sum w (y - z phi)^2`` s.t. ``sum phi = delta``.

    ``z`` ``[n, d]``, ``w`` ``[n]``, ``y`` ``[n, K]`` (values minus ``v(0)``), ``delta`` ``[K]``.
    Returns ``phi`` ``[d, K]`` and ``M`` ``[d, d]`` (the projected inverse used for standard errors).
    """
    z = z.to(torch.float64)
    zw = z * w.unsqueeze(1)
    a = zw.T @ z
    b = zw.T @ y
    d = a.shape[0]
    ones = torch.ones(d, 1, dtype=torch.float64)
    try:
        ainv = torch.linalg.inv(a)
        if not torch.isfinite(ainv).all():
            raise RuntimeError
    except RuntimeError:
        ainv = torch.linalg.pinv(a, hermitian=True)
    a1 = ainv @ ones                                       # [d, 1]
    ab = ainv @ b                                          # [d, K]
    denom = (ones.T @ a1).clamp_min(1e-300)
    lam = (ones.T @ ab - delta.view(1, -1)) / denom        # [1, K]
    phi = ab - a1 @ lam
    m = ainv - (a1 @ a1.T) / denom
    return phi, m


@dataclass
class SampleFit:
    """One sample's KernelSHAP state: its enumerated coalitions (``z_e``, kernel weights ``w_e``, values
    ``y_e`` minus ``v(0)``), its sampled size classes (``strata``, ``None`` when everything is enumerated) and
    the pairs drawn so far (``zp`` the size-``s`` member, ``cls`` its class, ``yp`` / ``yq`` the values of
    ``z`` / ``1 - z`` minus ``v(0)``), the evaluations ``left`` in its budget and whether it is ``done``."""
    d: int
    z_e: torch.Tensor
    w_e: torch.Tensor
    strata: Strata | None
    left: int
    y_e: torch.Tensor | None = None
    zp: list = field(default_factory=list)
    cls: list = field(default_factory=list)
    yp: list = field(default_factory=list)
    yq: list = field(default_factory=list)
    done: bool = False

    @property
    def pairs(self) -> int:
        return sum(z.shape[0] for z in self.zp)

    @property
    def exact(self) -> bool:
        return self.strata is None or all(n >= p for n, p in zip(self.strata.counts, self.strata.population))

    def next_pairs(self, batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """New pairs for this round: ``batch`` of them, or (``None``) all the budget allows."""
        want = self.left // 2 if batch is None else min(batch, self.left // 2)
        z, c = self.strata.draw(self.strata.allot(want))
        self.left -= 2 * z.shape[0]
        self.done = batch is None or z.shape[0] < batch or self.left < 2
        return z, c

    def add(self, z: torch.Tensor, c: torch.Tensor, yz: torch.Tensor, yc: torch.Tensor) -> None:
        self.zp.append(z)
        self.cls.append(c)
        self.yp.append(yz)
        self.yq.append(yc)

    def fit(self, delta: torch.Tensor, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The constrained regression on everything so far: ``phi`` ``[d, K]`` and standard errors ``[d]``."""
        z_parts, w_parts, y_parts = [self.z_e], [self.w_e], [self.y_e]
        if self.zp:
            zp, cls = torch.cat(self.zp), torch.cat(self.cls)
            yp, yq = torch.cat(self.yp), torch.cat(self.yq)
            w = self.strata.weights(cls)
            z_parts += [zp, ~zp]
            w_parts += [w, w]
            y_parts += [yp, yq]
        phi, m = solve(torch.cat(z_parts), torch.cat(w_parts), torch.cat(y_parts), delta)
        if not self.zp:
            return phi, torch.zeros(self.d, dtype=torch.float64)
        return phi, self.strata.std_err(m, phi[:, col], zp, cls, yp[:, col], yq[:, col])


@game_method("kernel_shap", layer="optional", players=True, baseline=True, sampled=True,
             summary="KernelSHAP: Shapley-kernel weighted regression, efficiency exact, std errors",
             reference="Lundberg & Lee 2017; Covert & Lee 2021; Musco & Witter 2025; thesis Proposition 2.34",
             error="std_err")
def kernel_shap(problem: Problem, options: GameOptions, n_samples: int = 2000, tolerance: float | None = None,
                batch_pairs: int = 64) -> Result:
    """KernelSHAP with a budget of ``n_samples`` model evaluations per sample (with
    ``n_samples >= 2^d - 2`` every coalition is used and the result is exact).

    ``info["std_err"]``: stratified standard errors; ``info["n_samples"]``: coalitions in the regression;
    ``info["exact"]``: every coalition was used. With ``tolerance`` only a quarter of the budget goes to
    enumerated sizes up front; pairs then come in rounds of ``batch_pairs`` until
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
    delta = v_full - v_empty
    col = game.target_column()
    phi = torch.zeros(n, L, K, dtype=torch.float64)
    se = torch.zeros(n, L, dtype=torch.float64)
    fits = [_start(int(game.n_players[i]), n_samples, tol is not None, problem) for i in range(n)]
    short = [f.d for f in fits if f.strata is not None and f.z_e.shape[0] == 0 and f.left // 2 < f.d]
    if short:       # pairs alone, no more of them than values: the fit interpolates and its error is unknown
        raise ValueError(f"KernelSHAP's regression is singular (underdetermined): n_samples={n_samples} "
                         f"evaluations give {n_samples // 2} complementary pairs of coalitions, too few to determine "
                         f"the values of {max(short)} players and their standard errors; use n_samples >= "
                         f"{2 * max(short) + 2}, better {max(2000, 8 * max(short))} (default 2000)")

    # enumerated classes, all samples in one call
    zs = [pad(f.z_e, L) for f in fits]
    rs = [torch.full((f.z_e.shape[0],), i, dtype=torch.long) for i, f in enumerate(fits)]
    ve = game(torch.cat(zs), torch.cat(rs)) if sum(z.shape[0] for z in zs) else torch.zeros(0, K, dtype=torch.float64)
    start = 0
    for i, f in enumerate(fits):
        f.y_e = ve[start:start + f.z_e.shape[0]] - v_empty[i]
        start += f.z_e.shape[0]
        if f.z_e.shape[0] and f.d > 1:
            phi[i, :f.d], se[i, :f.d] = f.fit(delta[i], int(col[i]))
    # sampled classes: complementary pairs, all samples' new pairs in one call per round
    active = [i for i, f in enumerate(fits) if f.strata is not None and f.left >= 2]
    while active:
        zs, rs, meta = [], [], []
        for i in active:
            z, c = fits[i].next_pairs(batch_pairs if tol is not None else None)
            if z.shape[0]:
                zs += [pad(z, L), pad(~z, L)]
                rs.append(torch.full((2 * z.shape[0],), i, dtype=torch.long))
            meta.append((i, z, c))
        vals = game(torch.cat(zs), torch.cat(rs)) if zs else None
        start, still = 0, []                      # vals: [z, 1 - z] of each sample in turn
        for i, z, c in meta:
            f, p = fits[i], z.shape[0]
            if p:
                vi = vals[start:start + 2 * p] - v_empty[i]
                start += 2 * p
                f.add(z, c, vi[:p], vi[p:])
                phi[i, :f.d], se[i, :f.d] = f.fit(delta[i], int(col[i]))
            if f.done:
                continue
            if f.pairs >= 2:
                ph = phi[i, :f.d, col[i]]
                if float(se[i, :f.d].max()) < tol * max(float(ph.max() - ph.min()), 1e-12):
                    continue
            still.append(i)
        active = still
    for i, f in enumerate(fits):
        if f.d == 1:
            phi[i, 0] = delta[i]
    singular = ~torch.isfinite(phi).flatten(1).all(1)
    if bool(singular.any()):       # too few distinct coalitions: the regression does not determine the values
        raise ValueError(f"KernelSHAP's regression is singular for {int(singular.sum())} of {n} sample(s): "
                         f"n_samples={n_samples} coalitions do not determine the values of {L} players (its "
                         f"solution is not finite); use more samples, e.g. n_samples >= {4 * L} (default 2000)")
    used = torch.tensor([f.z_e.shape[0] + 2 * f.pairs if f.d > 1 else 0 for f in fits])
    info = {"std_err": se, "n_samples": used, "exact": all(f.d == 1 or f.exact for f in fits)}
    return game.result(info, phi, v_full=v_full, v_empty=v_empty)


def _start(d: int, n_samples: int, adaptive: bool, problem: Problem) -> SampleFit:
    """A sample's plan: classes enumerated up front (all of them when the budget covers every coalition and no
    tolerance is set; a quarter of the budget with a tolerance), the rest left to sampling."""
    if d <= 1:
        return SampleFit(d, torch.zeros(0, max(d, 1), dtype=torch.bool), torch.zeros(0, dtype=torch.float64), None, 0)
    everything = d < 62 and n_samples >= (1 << d) - 2 and not adaptive
    planned = max(2 * d, n_samples // 4) if adaptive else n_samples
    z_e, w_e, rest = plan(d, (1 << d) - 2 if everything else planned, everything)
    strata = Strata(d, rest, size_mass(d), ALPHA, generator(problem)) if rest else None
    return SampleFit(d, z_e, w_e, strata, n_samples - z_e.shape[0])
