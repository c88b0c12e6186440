"""Quadrature rules on [0, 1] as data: ``rule(n) -> (alphas, weights)``.

Integrated Gradients approximates ``int_0^1 df(r + a (x - r))/dx da`` (Sundararajan et al. 2017; the
lecture's equations 10-11) by ``sum_k w_k grad f(r + a_k (x - r))``. Every rule's weights sum to exactly 1,
so a linear model's IG is exact at any step count. (Captum 0.9's ``riemann_trapezoid`` uses weights that sum
to (n-1)/n, which makes its IG of a linear model come out short by 1/n; ours is the textbook trapezoid rule.)
"""
from __future__ import annotations

import numpy as np
import torch


def _riemann(kind: str):
    def rule(n: int):
        k = np.arange(n, dtype=np.float64)
        offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[kind]
        return (k + offset) / n, np.full(n, 1.0 / n)
    return rule


def _trapezoid(n: int):
    if n < 2:
        raise ValueError("riemann_trapezoid needs steps >= 2")
    w = np.full(n, 1.0 / (n - 1))
    w[0] = w[-1] = 0.5 / (n - 1)
    return np.linspace(0.0, 1.0, n), w


def _gauss_legendre(n: int):
    t, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (t + 1.0), 0.5 * w


RULES = {
    "riemann_left": _riemann("riemann_left"),
    "riemann_right": _riemann("riemann_right"),
    "riemann_middle": _riemann("riemann_middle"),
    "riemann_trapezoid": _trapezoid,
    "gauss_legendre": _gauss_legendre,
}


def nodes(rule: str, n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alphas, weights)`` of ``rule`` with ``n`` points, as tensors."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"steps must be a positive int, got {n!r}")
    a, w = RULES[rule](n)
    return torch.as_tensor(a, dtype=dtype), torch.as_tensor(w, dtype=dtype)
