"""KernelSHAP's sampling design: coalitions drawn in complementary pairs, stratified by size, without
replacement, with stratified standard errors.

With ``d`` players, a size class ``c = {s, d - s}`` (``1 <= s <= d/2``) holds ``N_c`` complementary pairs (``C(d, s)``; half that
when ``s = d/2``) and the Shapley kernel mass ``K_c = C(d, s) pi(s) + C(d, d-s) pi(d-s)``. A class is either
enumerated (every coalition, its exact kernel weights) or sampled: ``n_c`` distinct pairs drawn uniformly
without replacement, each of its two rows weighted ``K_c / (2 n_c)``, so the regression's normal equations
``A = sum w z z^T``, ``b = sum w z y`` are stratified (Horvitz-Thompson) estimates of the full ones.

Pairs are allotted to classes in proportion to ``K_c^alpha x (sizes in c)^(1 - alpha)`` by a house-monotone
divisor rule (Webster), so rounds of a tolerance run only add pairs. ``alpha = 1`` is shap's kernel-mass
sampling; ``alpha = 0`` gives every coalition size the same number of pairs: the leverage scores of the
Shapley-kernel regression (Musco & Witter, ICLR 2025) are ``C(d, s)^-1`` per coalition, equal per size.

Standard errors: the constrained solution's linearisation is ``M (b - A phi)``; per pair it adds
``q = z r(z) + (1 - z) r(1 - z)`` (``r`` the residual of the fit) with weight ``K_c / (2 n_c)``, so
``Cov(phi) ~ M [sum_c (K_c / 2)^2 (1 - n_c / N_c) S_c / n_c] M`` with ``S_c`` the sample covariance of
``q`` in class ``c`` (finite-population corrected; Covert & Lee 2021 give the unstratified form), inflated by
``P / (P - f)`` for the ``f = (d - 1) x (sampled share of the kernel mass)`` values fitted to the same ``P``
pairs (the enumerated classes determine the rest).
"""
from __future__ import annotations

import heapq
import math

import torch

ENUMERATE_POPULATION = 1 << 16     # classes with at most this many pairs are shuffled whole, not rejection-sampled


class Strata:
    """The sampled size classes of one sample's game: their sizes, kernel masses, populations, pairs allotted
    and the pairs drawn so far (``drawn(c)``)."""

    def __init__(self, d: int, sizes: list[int], mass: torch.Tensor, alpha: float, g: torch.Generator):
        self.d, self.g, self.sizes = d, g, list(sizes)
        self.mass = [float(mass[s] + (mass[d - s] if 2 * s != d else 0.0)) for s in sizes]        # K_c
        self.fitted = (d - 1) * sum(self.mass) / float(mass.sum())     # values the pairs determine (rest: enumerated)
        self.population = [math.comb(d, s) // (2 if 2 * s == d else 1) for s in sizes]           # N_c
        members = [1.0 if 2 * s == d else 2.0 for s in sizes]
        self.share = [k ** alpha * m ** (1.0 - alpha) for k, m in zip(self.mass, members)]
        self.counts = [0] * len(sizes)
        self._keys: list[set] = [set() for _ in sizes]
        self._order: list[torch.Tensor | None] = [None] * len(sizes)

    @property
    def capacity(self) -> int:
        return sum(self.population)

    def allot(self, pairs: int) -> list[int]:
        """Raise the pair counts by ``pairs`` in all (Webster's divisor rule on ``share``, capped by ``N_c``);
        returns the increments per class."""
        add = [0] * len(self.sizes)
        heap = [(-self.share[c] / (self.counts[c] + 0.5), c) for c in range(len(self.sizes))
                if self.counts[c] < self.population[c] and self.share[c] > 0]
        heapq.heapify(heap)
        for _ in range(pairs):
            if not heap:
                break
            _, c = heapq.heappop(heap)
            add[c] += 1
            n = self.counts[c] + add[c]
            if n < self.population[c]:
                heapq.heappush(heap, (-self.share[c] / (n + 0.5), c))
        return add

    def draw(self, add: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``add[c]`` new distinct pairs per class: ``z`` ``[P, d]`` (the size-``s`` member; for ``s = d/2``
        the member holding player 0) and their class indices ``[P]``. Updates the counts."""
        zs, cs = [], []
        for c, k in enumerate(add):
            if k <= 0:
                continue
            z = self._draw_class(c, k)
            zs.append(z)
            cs.append(torch.full((k,), c, dtype=torch.long))
            self.counts[c] += k
        if not zs:
            return torch.zeros(0, self.d, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
        return torch.cat(zs), torch.cat(cs)

    def _draw_class(self, c: int, k: int) -> torch.Tensor:
        d, s = self.d, self.sizes[c]
        if self.population[c] <= ENUMERATE_POPULATION:            # a random order of the whole class, read on
            if self._order[c] is None:
                self._order[c] = torch.randperm(self.population[c], generator=self.g)
            idx = self._order[c][self.counts[c]:self.counts[c] + k]
            return _unrank(d, s, idx, half=2 * s == d)
        out, keys = [], self._keys[c]
        while len(out) < k:                                       # rejection: repeats are rare in large classes
            rank = torch.rand(2 * (k - len(out)) + 2, d, generator=self.g).argsort(1).argsort(1)
            z = rank < s
            if 2 * s == d:
                z = torch.where(z[:, :1], z, ~z)                  # the member holding player 0
            for row in z:
                key = row.numpy().tobytes()
                if key not in keys:
                    keys.add(key)
                    out.append(row)
                    if len(out) == k:
                        break
        return torch.stack(out)

    def weights(self, cls: torch.Tensor) -> torch.Tensor:
        """Regression weight of each row of a pair of class ``cls``: ``K_c / (2 n_c)``."""
        per = torch.tensor([self.mass[c] / (2 * max(n, 1)) for c, n in enumerate(self.counts)], dtype=torch.float64)
        return per[cls]

    def std_err(self, m: torch.Tensor, phi: torch.Tensor, zp: torch.Tensor, cls: torch.Tensor, yp: torch.Tensor,
                yq: torch.Tensor) -> torch.Tensor:
        """Stratified sandwich standard errors (module docstring) of ``phi`` ``[d]`` (target column) from the
        pairs ``zp`` ``[P, d]`` of classes ``cls`` with values ``yp`` (of ``z``) and ``yq`` (of ``1 - z``)."""
        d, p = self.d, zp.shape[0]
        if p < 2:
            return torch.full((d,), float("inf"), dtype=torch.float64)
        zf = zp.to(torch.float64)
        zc = 1.0 - zf
        q = zf * (yp - zf @ phi).unsqueeze(1) + zc * (yq - zc @ phi).unsqueeze(1)      # [P, d]
        scale = torch.tensor([k / 2 for k in self.mass], dtype=torch.float64)[cls]
        t = scale.unsqueeze(1) * q                            # each pair's estimate of its class's total
        pooled = t - t.mean(0)
        pooled = pooled.T @ pooled / (p - 1)                  # for classes holding a single pair
        var = torch.zeros(d, d, dtype=torch.float64)
        for c, n in enumerate(self.counts):
            if n == 0 or n >= self.population[c]:            # not sampled, or every pair of it: no sampling error
                continue
            fpc = 1.0 - n / self.population[c]
            if n == 1:
                var += fpc * pooled
                continue
            tc = t[cls == c]
            tc = tc - tc.mean(0)
            var += fpc * (tc.T @ tc) / ((n - 1) * n)
        cov = m @ var @ m
        inflate = p / max(p - self.fitted, 1.0)
        return (cov.diagonal().clamp_min(0) * inflate).sqrt()


def _unrank(d: int, s: int, idx: torch.Tensor, half: bool) -> torch.Tensor:
    """Coalitions of size ``s`` with lexicographic ranks ``idx`` (combinatorial number system); with ``half``
    (``s = d/2``) ranks count only the coalitions holding player 0."""
    out = torch.zeros(len(idx), d, dtype=torch.bool)
    for row, r in enumerate(idx.tolist()):
        start, need = 0, s
        if half:
            out[row, 0] = True
            start, need = 1, s - 1
        for j in range(start, d):
            if need == 0:
                break
            below = math.comb(d - j - 1, need - 1)               # coalitions that take player j here
            if r < below:
                out[row, j] = True
                need -= 1
            else:
                r -= below
    return out
